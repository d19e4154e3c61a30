// Package eif reads, validates, measures, builds and signs AWS Nitro Enclaves
// Enclave Image Format (EIF) files.
//
// An EIF is a 548-byte big-endian header followed by up to 32 sections
// (kernel, cmdline, metadata, ramdisks, signature), each a 12-byte section
// header and its data. [Open] and [NewReader] validate the structure and give
// the sections as lazy [io.SectionReader]s; [File.Measure] computes PCR0,
// PCR1, PCR2 and PCR8 exactly as nitro-cli does and checks the CRC-32 in one
// read pass; [File.Describe] gives the object `nitro-cli describe-eif`
// prints; [Build] writes an EIF, signed when given a key and certificate.
//
// The format is defined by aws-nitro-enclaves-image-format (src/defs/mod.rs);
// measurements follow its src/utils (get_pcrs, EifReader).
//
// # Security
//
// EIF files are untrusted input. The reader never allocates a size taken from
// the file without a bound: section data is only reached through
// [io.SectionReader]s, and the few sections read into memory (cmdline,
// metadata, signature) are capped by [CmdlineMaxBytes], [MetadataMaxBytes] and
// [SignatureMaxBytes]. Every offset and size is checked against the file size
// with overflow-safe arithmetic, the section count is capped at
// [MaxSections], and sections must be contiguous and cover the file, so the
// bytes measured here are the bytes nitro-cli measures (it walks sections in
// file order) and the bytes a loader following header offsets boots.
//
// Structural validity is not authenticity. [NewReader] does not read section
// data; call [File.Measure] (or [File.Verify]) to check the CRC, and compare
// the PCRs with expected values before trusting an image. A valid signature
// section only proves that the holder of the embedded certificate's key
// signed PCR0; whether that certificate is trusted (PCR8) is the caller's
// decision.
package eif
