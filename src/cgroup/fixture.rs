//! Test fixture: a temporary directory laid out like cgroupfs. The root looks like the root of
//! the hierarchy (no `cgroup.type`, no limit files); every cgroup below gets the knob files a
//! kernel would create, with the kernel's defaults, for the controllers the fixture offers.
//! Unlike cgroupfs the files are static: a write replaces the content and `cgroup.controllers`
//! of a child doesn't follow its parent's `cgroup.subtree_control`.

use std::fs;
use std::path::{Path, PathBuf};

pub const ALL_CONTROLLERS: &str = "cpuset cpu io memory hugetlb pids rdma misc";

const CORE: &[(&str, &str)] = &[
    ("cgroup.subtree_control", ""),
    ("cgroup.procs", ""),
    ("cgroup.events", "populated 0\nfrozen 0\n"),
    ("cgroup.freeze", "0\n"),
    ("cgroup.kill", ""),
    ("cgroup.type", "domain\n"),
    ("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
    (
        "cpu.pressure",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    ),
    (
        "memory.pressure",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    ),
    (
        "io.pressure",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    ),
];

const PER_CONTROLLER: &[(&str, &[(&str, &str)])] = &[
    (
        "cpu",
        &[
            ("cpu.max", "max 100000\n"),
            ("cpu.weight", "100\n"),
            ("cpu.idle", "0\n"),
        ],
    ),
    (
        "cpuset",
        &[
            ("cpuset.cpus", "\n"),
            ("cpuset.mems", "\n"),
            ("cpuset.cpus.effective", "0-3\n"),
            ("cpuset.mems.effective", "0\n"),
        ],
    ),
    (
        "memory",
        &[
            ("memory.max", "max\n"),
            ("memory.high", "max\n"),
            ("memory.low", "0\n"),
            ("memory.min", "0\n"),
            ("memory.swap.max", "max\n"),
            ("memory.oom.group", "0\n"),
            ("memory.current", "0\n"),
            ("memory.peak", "0\n"),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
            ),
        ],
    ),
    ("pids", &[("pids.max", "max\n"), ("pids.current", "0\n")]),
    (
        "io",
        &[
            ("io.weight", "default 100\n"),
            ("io.bfq.weight", "default 100\n"),
            ("io.max", ""),
            ("io.stat", ""),
        ],
    ),
];

pub struct Fixture {
    dir: tempfile::TempDir,
    controllers: String,
}

impl Fixture {
    /// A root offering every controller.
    pub fn new() -> Self {
        Self::with_controllers(ALL_CONTROLLERS)
    }

    /// A root whose `cgroup.controllers` is `controllers`.
    pub fn with_controllers(controllers: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let fx = Fixture {
            dir,
            controllers: controllers.to_string(),
        };
        let root = fx.path().to_path_buf();
        fx.put(&root, "cgroup.controllers", &format!("{controllers}\n"));
        for (name, content) in [
            ("cgroup.subtree_control", ""),
            ("cgroup.procs", ""),
            ("cpu.stat", "usage_usec 0\n"),
        ] {
            fx.put(&root, name, content);
        }
        fx
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn put(&self, dir: &Path, name: &str, content: &str) {
        fs::write(dir.join(name), content).expect("fixture write");
    }

    /// Creates `rel` and any missing cgroup above it, each with its knob files.
    pub fn cgroup(&self, rel: &str) -> PathBuf {
        let mut dir = self.path().to_path_buf();
        for part in Path::new(rel).components() {
            dir.push(part);
            if dir.is_dir() {
                continue;
            }
            fs::create_dir(&dir).expect("fixture mkdir");
            self.put(
                &dir,
                "cgroup.controllers",
                &format!("{}\n", self.controllers),
            );
            for (name, content) in CORE {
                self.put(&dir, name, content);
            }
            for (controller, files) in PER_CONTROLLER {
                if self
                    .controllers
                    .split_whitespace()
                    .any(|c| c == *controller)
                {
                    for (name, content) in *files {
                        self.put(&dir, name, content);
                    }
                }
            }
        }
        dir
    }

    pub fn read(&self, rel: &str, file: &str) -> String {
        fs::read_to_string(self.path().join(rel).join(file)).expect("fixture read")
    }

    pub fn write(&self, rel: &str, file: &str, content: &str) {
        self.put(&self.path().join(rel), file, content);
    }
}
