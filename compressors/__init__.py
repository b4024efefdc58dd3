"""Compressors: the published compression methods. Looked up by name in ``COMPRESSORS``."""

from __future__ import annotations

from harness.registry import Registry

COMPRESSORS: Registry = Registry("compressor", entry_point_group="compression_bench.compressors")

# Lazy entries: "module:attr" is imported only when the compressor is used.
for _name, _target in {
    "none": "compressors.none:NoCompression",
    "qnn": "compressors.qnn:QNN",
    "dsd": "compressors.dsd:DSD",
    "llr": "compressors.dsd:LLR",
    "taylor": "compressors.taylor:TaylorPruning",
    "lns_madam": "compressors.lns_madam:LNSMadamCompressor",
    "ternary_rnn": "compressors.ternary_rnn:TernaryRNN",
    "deepinversion": "compressors.deepinversion.compressor:DeepInversion",
    "packnet": "compressors.continual.packnet:PackNet",
    "piggyback": "compressors.continual.piggyback:Piggyback",
    "unas": "compressors.unas.compressor:UNAS",
}.items():
    COMPRESSORS.register_lazy(_name, _target)
