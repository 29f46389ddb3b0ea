"""The device edge: NATS auth callout responder for MQTT devices, its credentials projection, kicks."""
