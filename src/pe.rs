//! Reading PE/COFF images.
