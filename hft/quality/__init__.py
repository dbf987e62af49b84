"""Data quality: Great Expectations suites for ticks, bars and features, and PSI drift.

* :mod:`hft.quality.validate`: ``validate_ticks/bars/features(settings, start, end)`` (and
  ``validate(settings, kind, ...)``) → :class:`~hft.quality.validate.ValidationSummary`,
  recorded in ``<home>/quality/validation_runs.jsonl`` with data docs in ``<home>/data_docs``.
* :mod:`hft.quality.frames`: the partition frames the suites read (pure pandas).
* :mod:`hft.quality.partition`: which window a DAG run validates or backfills (trigger config,
  data interval, or the stored data's latest complete hour) and clear errors for a bad config.
* :mod:`hft.quality.drift`: population stability index against the training reference.
* :mod:`hft.quality.gx_runner`: loads ``expectations/`` into a GE file context and runs it.

Great Expectations is imported only when a validation runs (it takes seconds to import).
"""
