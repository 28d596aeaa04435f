"""Face detection and the face crop (the paper's Section 4): ``detect`` (upright HOG, turned
copies, CNN; roll from the eyes), ``nms`` (one box per face), ``geometry`` (the square, where
it goes, the matrices), ``resample`` (one anti-aliased warp, the validity mask), ``crop`` (a
flash/studio pair), ``dataset`` (the crop stage over a manifest)."""
