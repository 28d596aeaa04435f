"""Synthetic flash/studio portrait pairs: the demo dataset and a test fixture with known answers.

Each pair is rendered from one portrait photograph, treated as the albedo of a simple scene:
a person (GrabCut silhouette seeded by the HOG face box) in front of a flat background. A depth
proxy gives every pixel a distance from the camera (face near, body a little further, background
far) and a normal (an ellipsoid for the head, a cylinder for the body, the albedo's gradients as
bump detail). Two images are lit from that scene:

* flash: a point light a few centimetres beside the lens. Irradiance falls off with the inverse
  square of the distance to the light, so the background darkens; Lambert shading plus
  Blinn-Phong specular highlights, stronger and tighter on the skin of the face (shine); a hard
  shadow of the person on the background, offset opposite the flash; cooler white balance; a
  little ambient light; Gaussian sensor noise.
* studio: soft, even, warmer light (large key light from one side, no fall-off, no shadow).

The studio image is then misaligned by a known small affine transform (rotation, scale, shear,
shift) and the 2x3 matrix is written to ``truth.csv`` with the registration contract's
convention: it maps a flash pixel (x, y) to the matching studio pixel, so
``cv2.warpAffine(studio, M, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)`` aligns the
studio image onto the flash image.

Sources: scikit-image's ``astronaut`` and matplotlib's ``grace_hopper`` (both public domain) or a
folder of portraits, one subject per file. When there are fewer sources than subjects, further
subjects are derived from the same photographs by honest variation: another framing (face size
and position in the frame), mirroring, a skin-tone shift and a hair-colour shift. Poses are
small variations of head position, zoom and camera roll. Everything is deterministic by seed.
"""

from pipeline.datasets.demo.generate import DemoPair, DemoSummary, contact_sheet, generate_demo
from pipeline.datasets.demo.render import RenderedPair, render_pair
from pipeline.datasets.demo.sources import (
    Source,
    default_prepared_sources,
    default_sources,
    folder_sources,
    prepare_source,
)
from pipeline.datasets.demo.specs import (
    Misalignment,
    PoseSpec,
    SubjectSpec,
    make_pose_specs,
    make_subject_specs,
)

__all__ = [
    "DemoPair",
    "DemoSummary",
    "Misalignment",
    "PoseSpec",
    "RenderedPair",
    "Source",
    "SubjectSpec",
    "contact_sheet",
    "default_prepared_sources",
    "default_sources",
    "folder_sources",
    "generate_demo",
    "make_pose_specs",
    "make_subject_specs",
    "prepare_source",
    "render_pair",
]
