"""The models: the one loader (4-bit NF4 + LoRA), the classification head by hand, the teaching NF4 quantiser and
the activation measurements (chapters 01-02). Imports only ``setup``."""
