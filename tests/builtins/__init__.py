"""Tests of the built-in nodes: IntervalProducer, CounterProducer, LogSink, SQLiteWriter."""
