//! The watch service's Prometheus metrics. SKELETON, being built (issue 11).
