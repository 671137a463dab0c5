"""Shared network I/O for the agent and the hub: the reconnecting MQTT link (`mqtt`), reconnect
backoff (`backoff`) and the cancellation check every long-running loop makes (`cancel`).

Layer: above `contracts`, beside `runtime`; imports nothing else of ours (make lint checks it).
"""
