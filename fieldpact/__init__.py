"""The shell on top: the `fieldpact` command (`cli`), its contract and key commands
(`contract_cli`), the demo (`demo`) and a whole site on loopback (`loopback`) for the demo and the
end-to-end tests.

Layer: the top; imports agent, hub, simulators and the layers below, and is imported by nothing
(tests and bench aside). make lint checks it.
"""
