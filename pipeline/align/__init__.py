"""Flash/studio registration (paper Sec. 3.1): Mattes MI affine with SimpleITK."""
