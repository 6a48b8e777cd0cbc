//! cgroup v2 engine.
