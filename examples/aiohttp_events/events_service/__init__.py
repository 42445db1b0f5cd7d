"""An events service: an aiohttp API that publishes events to Kafka (`events_service.app`) and a
worker that consumes and processes them (`events_service.worker`)."""
