"""What all three services use: settings, database, auth, API, events, notifications, queues."""
