"""Print a development bearer token and nothing else.

make token ORG=GMP ROLE=recipient [CLEARANCE=OFFICIAL] [SUB=someone@gmp]
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from services import settings_for
from shared.auth import mint_token
from shared.vocabulary import CLASSIFICATIONS, ROLES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--org", required=True)
    parser.add_argument("--role", required=True, help=f"comma-separated: {', '.join(ROLES)}")
    parser.add_argument("--clearance", default="OFFICIAL-SENSITIVE", choices=CLASSIFICATIONS)
    parser.add_argument("--sub", default="")
    parser.add_argument("--hours", type=int, default=12)
    args = parser.parse_args()
    roles = [r.strip() for r in args.role.split(",") if r.strip()]
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        parser.error(f"unknown role {', '.join(unknown)}; use {', '.join(ROLES)}")
    org = args.org.strip().upper()
    print(
        mint_token(
            settings_for("dissemination"),
            sub=args.sub or f"{roles[0]}@{org.lower()}",
            org=org,
            roles=roles,
            clearance=args.clearance,
            ttl=timedelta(hours=args.hours),
        )
    )


if __name__ == "__main__":
    main()
