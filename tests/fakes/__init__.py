"""Fake music services for tests: aiohttp servers on 127.0.0.1 speaking the real APIs' JSON."""
