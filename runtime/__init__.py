"""What every long-running fieldpact process needs from its host: configuration (`settings`),
private files and directories (`files`), structured, escaped logs (`logs`).

Layer: above `contracts`, beside `transport`; imports nothing else of ours (make lint checks it).
"""
