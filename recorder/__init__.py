"""Webhook recorder into the spec's Postgres tables (aiohttp + psycopg). Built in issue 3; nothing here yet."""
