//! The watch service's HTTP listener. SKELETON, being built (issue 11).
