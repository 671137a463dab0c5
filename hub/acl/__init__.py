"""Who may do what on the broker: the policy (`policy`), broker passwords (`passwords`), and its
rendering for a site's own Mosquitto (`mosquitto`). Pure apart from `mosquitto.export`, which
writes files. The embedded amqtt broker (hub/broker.py) enforces the same `policy`."""
