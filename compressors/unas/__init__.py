"""UNAS (Vahdat et al., CVPR'20, arXiv 1912.07651): the search method; the search spaces are ``workloads/nas``.

Modules: :mod:`.distributions` (the categorical over every choice, Gumbel-softmax and REBAR samples, the two spaces),
:mod:`.estimators` (UNAS / REINFORCE / Gumbel-softmax gradient estimators), :mod:`.latency` (measured latency,
ridge surrogate, hinge), :mod:`.search` (the search loop and the random-search baseline), :mod:`.compressor` (the
``unas`` compressor).
"""
