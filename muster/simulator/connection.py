"""Where the simulator's MQTT connection used to live; it is `muster.runtime.mqtt_connection` now."""

from muster.runtime.mqtt_connection import MqttConnection as DeviceConnection
from muster.runtime.mqtt_connection import MqttRefused, Will

__all__ = ["DeviceConnection", "MqttRefused", "Will"]
