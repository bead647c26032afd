"""Building blocks that components share: the device policy, repeatable random weights,
checkpoint checks, two-level mask selection and the masked-crop recipe of mask features."""
