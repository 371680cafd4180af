"""Use cases and the ports they need; imports nothing of falcon, celery, redis or sqlalchemy."""
