"""A simulated device's register image: our four tables, sparse, the truth pymodbus only frames.

Rules: bit tables (coil, discrete) hold bools and register tables (holding, input) 16-bit words;
an address never written reads False or 0. Multi-word values are stored as the point's codec
(simulators/models.py encode/decode) lays them out, optionally word-swapped (the SWAP_WORDS fault).
Registers from CONTROL_BASE (9000) are not in the image: they read the fault switch's mirror.
pymodbus packs bit tables 16 bits per word, bit 0 first (pymodbus.simulator.simutils.bitsToRegisters).
"""
from __future__ import annotations

from contracts.schema import Point, Table
from contracts.types import Value
from simulators.faults import CONTROL_BASE
from simulators.models import decode, encode, swap_words


class RegisterImage:
    """The four tables of one device."""

    def __init__(self) -> None:
        self.bits: dict[Table, dict[int, bool]] = {Table.COIL: {}, Table.DISCRETE: {}}
        self.regs: dict[Table, dict[int, int]] = {Table.HOLDING: {}, Table.INPUT: {}}

    def store_bit(self, point: Point, value: bool) -> None:
        self.bits[point.table][point.address] = value

    def store_words(self, point: Point, value: Value, *, swap: bool) -> None:
        words = encode(point, value)
        if swap and len(words) > 1:
            words = swap_words(words)
        for i, word in enumerate(words):
            self.regs[point.table][point.address + i] = word

    def write(self, table: Table, address: int, written: list[int] | list[bool]) -> None:
        """A client's write of `written` from `address`, as it came."""
        for i, value in enumerate(written):
            if table.is_bit:
                self.bits[table][address + i] = bool(value)
            else:
                self.regs[table][address + i] = int(value)

    def value_of(self, point: Point) -> Value:
        """`point`'s value as the image holds it (decoded, not swapped back)."""
        if point.table.is_bit:
            return self.bits[point.table].get(point.address, False)
        span = range(point.address, point.last_address + 1)
        return decode(point, [self.regs[point.table].get(a, 0) for a in span])

    def fill_registers(self, table: Table, start: int, address: int, count: int,
                       registers: list[int], control: list[int]) -> None:
        """Copy `count` words from `address` into pymodbus's `registers` (which begin at `start`);
        addresses from CONTROL_BASE read `control` (the fault switch's mirror)."""
        image = self.regs[table]
        for a in range(address, address + count):
            if a >= CONTROL_BASE:
                registers[a - start] = control[a - CONTROL_BASE]
            else:
                registers[a - start] = image.get(a, 0)

    def fill_bits(self, table: Table, start: int, first_word: int, count: int,
                  registers: list[int]) -> None:
        """Copy `count` packed words of bits from word `first_word` into `registers`."""
        image = self.bits[table]
        for word in range(first_word, first_word + count):
            bits = (image.get(word * 16 + k, False) for k in range(16))
            registers[word - start] = sum(1 << k for k, bit in enumerate(bits) if bit)
