module drmesh.io/images

go 1.26.0
