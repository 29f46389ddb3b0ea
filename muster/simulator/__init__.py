"""The device simulator behind `muster simulate` and bench/ingest.py's MQTT mode: registered devices run
as real MQTT 3.1.1 clients (many per asyncio loop) that speak the device contract."""
