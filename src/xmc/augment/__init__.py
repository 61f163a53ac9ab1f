"""XDA: prompt-based data augmentation for tail labels (Taming Prompt-Based Data Augmentation for
Long-Tailed Extreme Multi-Label Text Classification).

* :mod:`.generator` -- label-conditional span infilling with peft prefix tuning over a frozen
  T5 (or causal LM);
* :mod:`.filtering` -- diversity S_Div (Eq. 2) and consistency S_Con (Eq. 3) with a pre-trained
  XMC model f0, and the keep rule;
* :mod:`.masked_loss` -- the augmentation loss that drops head-label positives (Eq. 4);
* :mod:`.corpus` -- the augmented JSONL with provenance;
* :mod:`.pipeline` -- the whole ``xmc augment`` run;
* :mod:`.finetune` -- fine-tuning a LightXML / GUDN on real + augmented documents.

Torch is imported only by :mod:`.generator`, :mod:`.masked_loss` and :mod:`.finetune`.
"""

from .configs import AugmentConfig, FilterConfig, FinetuneConfig, GeneratorConfig
from .corpus import AugmentedDocument, augmented_dataset, read_augmented, write_augmented

__all__ = ["AugmentConfig", "FilterConfig", "FinetuneConfig", "GeneratorConfig", "AugmentedDocument",
           "augmented_dataset", "read_augmented", "write_augmented"]
