//! Local stand-ins of the vendor APIs, faithful to what the vendors document. The test suite,
//! the benchmarks and the demo use these same implementations.

pub mod typingmind;
pub mod yourgpt;
