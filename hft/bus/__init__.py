"""The Kafka side of the system: the client factory (:mod:`hft.bus.client`)."""
