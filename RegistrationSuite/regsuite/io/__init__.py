"""Files: images, masks, transforms, displacement fields and point sets."""
