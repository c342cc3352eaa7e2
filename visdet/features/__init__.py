"""Tools for looking at feature maps: previews of encoder and backbone outputs."""
