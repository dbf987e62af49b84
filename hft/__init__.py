"""hft: the domain library of the crypto HFT MLOps system."""

# Importing feast points prometheus_client at a temporary multiprocess directory (through
# environment variables) that it later deletes; prometheus_client picks its value store once, at
# import. Importing it here, before anything can import feast, keeps every metric of our
# processes in memory, as their /metrics endpoints expect.
import prometheus_client.values  # noqa: F401
