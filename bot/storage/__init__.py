"""Storage of the mood companion: SQLAlchemy models, async engine, migrations, store.

Typical start-up (the service does this)::

    engine = create_engine(url)
    await check_schema(engine)          # or upgrade_async(engine) when auto-upgrade is on
    store = Store(make_sessionmaker(engine))
    ...
    await engine.dispose()

This package does not import the models (:mod:`mer_models`): the service maps its results to
the plain records of :mod:`bot.storage.store`.
"""
