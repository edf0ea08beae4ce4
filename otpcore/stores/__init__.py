"""Storage adapters: import the one you use from its module (memory, sqlalchemy, mongodb, redis)."""

__all__: list[str] = []
