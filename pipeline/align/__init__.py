"""Flash/studio registration (paper Sec. 3.1): Mattes MI affine with SimpleITK, checked.

``mi`` registers one pair (``register``); ``pyramid`` and ``search`` are its SimpleITK
copies and optimisation (capture search, multi-start, affine levels); ``geometry`` holds the
matrix conventions; ``facecheck`` and ``plausibility`` flag implausible results per pair and
against the folder; ``dataset`` runs the register stage over a manifest; ``synthetic`` makes
pairs with a known answer.
"""
