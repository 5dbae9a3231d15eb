"""Developer commands behind the Makefile: run, token."""
