"""Pretrained weights: reading checkpoints (``checkpoint_state``), the URL cache (``cache``),
one checked loader with a summary (``state_loading``), detector and backbone initialisation
(``pretrained``) and the converters of foreign checkpoints (``convert/``), which the detector
families register in their records."""
