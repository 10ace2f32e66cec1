"""REALM's data: block corpus Z, salient-span annotations of X, masking and ICT inputs."""
