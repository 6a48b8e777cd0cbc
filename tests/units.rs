//! Loading as a whole: the example units, the search path and its precedence, drop-ins,
//! implicit slices, one bad file among good ones, and start/stop order.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use corral::unit::{LoadState, SearchPath, UnitName, load_files, load_path};

fn n(s: &str) -> UnitName {
    UnitName::parse(s).unwrap()
}

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, text).unwrap();
    p
}

const TRUE: &str = "[service]\nexec = [\"/bin/true\"]\n";

#[test]
fn every_example_unit_loads_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("units");
    let set = load_path(&SearchPath(vec![dir.clone()]));
    assert!(set.diagnostics.is_empty(), "{:#?}", set.diagnostics);
    let files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    assert!(files.len() >= 10, "examples: {files:?}");
    for f in &files {
        let name = n(f
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .strip_suffix(".toml")
            .unwrap());
        assert!(set.get(&name).is_some(), "{name} did not load");
    }
    // The pod shares one network namespace; the drop-in raised web's memory-max.
    let app = set.get(&n("pod-app.service")).unwrap();
    let ns = &app.service.as_ref().unwrap().namespaces;
    assert_eq!(
        format!("{:?}", ns.net),
        r#"Some(Share(UnitName("pod-infra.service")))"#
    );
    let web = set.get(&n("web.service")).unwrap();
    assert_eq!(web.resources.memory_max.unwrap().to_string(), "96M");
    assert_eq!(web.files.len(), 2, "web.service.toml and its drop-in");
    let batch = set.get(&n("batch-crunch.service")).unwrap();
    assert_eq!(
        batch.cgroup_path(),
        Path::new("apps.slice/apps-batch.slice/batch-crunch.service")
    );

    let out = Command::new(assert_cmd::cargo::cargo_bin!("corralctl"))
        .arg("verify")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn first_directory_wins_and_dropins_merge_in_lexical_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (etc, run, lib) = (
        tmp.path().join("etc"),
        tmp.path().join("run"),
        tmp.path().join("lib"),
    );
    write(
        &etc,
        "web.service.toml",
        "[unit]\ndescription = \"etc\"\n[service]\nexec = [\"/bin/etc\"]\n",
    );
    write(
        &lib,
        "web.service.toml",
        "[unit]\ndescription = \"lib\"\n[service]\nexec = [\"/bin/lib\"]\n",
    );
    write(&lib, "only-lib.service.toml", TRUE);
    // Drop-ins: 10 from lib and 20 from run apply in name order; etc's 20 masks run's 20.
    write(
        &lib,
        "web.service.d/10-a.toml",
        "[service]\nenvironment = { A = \"lib10\", B = \"lib10\" }\n",
    );
    write(
        &run,
        "web.service.d/20-b.toml",
        "[service]\nenvironment = { B = \"run20\" }\n",
    );
    write(
        &etc,
        "web.service.d/20-b.toml",
        "[service]\nenvironment = { B = \"etc20\", C = \"etc20\" }\n",
    );
    write(
        &run,
        "web.service.d/30-c.toml",
        "[resources]\nmemory-max = \"1G\"\n",
    );
    write(&run, "web.service.d/notes.txt", "ignored");

    let set = load_path(&SearchPath(vec![etc.clone(), run.clone(), lib.clone()]));
    assert!(set.diagnostics.is_empty(), "{:#?}", set.diagnostics);
    let web = set.get(&n("web.service")).unwrap();
    let s = web.service.as_ref().unwrap();
    assert_eq!(web.description, "etc");
    assert_eq!(s.exec, ["/bin/etc"]);
    let env: Vec<_> = s
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(env, ["A=lib10", "B=etc20", "C=etc20"]);
    assert_eq!(web.resources.memory_max.unwrap().to_string(), "1G");
    assert_eq!(
        web.files,
        [
            etc.join("web.service.toml"),
            lib.join("web.service.d/10-a.toml"),
            etc.join("web.service.d/20-b.toml"),
            run.join("web.service.d/30-c.toml"),
        ]
    );
    assert!(set.get(&n("only-lib.service")).is_some());
}

#[test]
fn user_search_path_follows_xdg() {
    let env = |k: &str| match k {
        "XDG_CONFIG_HOME" => Some("/home/u/cfg".to_string()),
        "XDG_RUNTIME_DIR" => Some("/run/user/1000".to_string()),
        _ => None,
    };
    let p = SearchPath::user(env, Path::new("/home/u"), 1000);
    assert_eq!(
        p.0,
        [
            PathBuf::from("/home/u/cfg/corral/units"),
            PathBuf::from("/run/user/1000/corral/units"),
            PathBuf::from("/home/u/.local/share/corral/units"),
        ]
    );
    assert_eq!(
        SearchPath::system().0[0],
        PathBuf::from("/etc/corral/units")
    );
}

#[test]
fn one_bad_file_never_stops_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "good.service.toml", TRUE);
    write(
        tmp.path(),
        "bad.service.toml",
        "[service]\nexec = [\"/bin/true\"]\nrestart = 3\nbogus = 1\n",
    );
    write(tmp.path(), "broken.service.toml", "[service\n");
    write(tmp.path(), "README.md", "not a unit");
    write(tmp.path(), "bad name.service.toml", TRUE);
    let set = load_path(&SearchPath(vec![tmp.path().to_path_buf()]));
    assert!(set.get(&n("good.service")).is_some());
    match &set.units[&n("bad.service")].state {
        LoadState::Error(msg) => assert!(msg.contains("[service] restart"), "{msg}"),
        other => panic!("bad.service: {other:?}"),
    }
    assert!(matches!(
        set.units[&n("broken.service")].state,
        LoadState::Error(_)
    ));
    // Every error of every file: two in bad, one in broken, one for the bad file name.
    let errors: Vec<String> = set.errors().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(errors.iter().any(|e| e.contains("bogus")));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("bad name.service.toml") && e.contains("' '"))
    );
}

#[test]
fn implicit_slices_and_the_slice_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let job = write(
        tmp.path(),
        "job.service.toml",
        "[unit]\nslice = \"apps-batch-nightly.slice\"\n[service]\nexec = [\"/bin/true\"]\n",
    );
    let web = write(tmp.path(), "web.service.toml", TRUE);
    let apps = write(
        tmp.path(),
        "apps.slice.toml",
        "[resources]\nmemory-max = \"1G\"\n",
    );
    let set = load_files(&[job, web, apps]);
    assert!(set.diagnostics.is_empty(), "{:#?}", set.diagnostics);
    let names: BTreeSet<&str> = set.units.keys().map(UnitName::as_str).collect();
    let want: BTreeSet<&str> = [
        "-.slice",
        "apps.slice",
        "apps-batch.slice",
        "apps-batch-nightly.slice",
        "job.service",
        "system.slice",
        "web.service",
    ]
    .into();
    assert_eq!(names, want);
    let implicit = set.get(&n("apps-batch.slice")).unwrap();
    assert!(implicit.files.is_empty() && implicit.resources.is_empty());
    assert_eq!(
        set.get(&n("apps.slice"))
            .unwrap()
            .resources
            .memory_max
            .unwrap()
            .to_string(),
        "1G"
    );
    assert_eq!(
        set.get(&n("job.service")).unwrap().cgroup_path(),
        Path::new("apps.slice/apps-batch.slice/apps-batch-nightly.slice/job.service")
    );
}

#[test]
fn transactions_pull_in_dependencies_and_order_them() {
    let tmp = tempfile::tempdir().unwrap();
    let files = vec![
        write(tmp.path(), "db.service.toml", TRUE),
        write(tmp.path(), "cache.service.toml", TRUE),
        write(
            tmp.path(),
            "pod.service.toml",
            "[service]\nexec = [\"/bin/true\"]\n[namespaces]\nnet = true\n",
        ),
        write(
            tmp.path(),
            "web.service.toml",
            "[unit]\nrequires = [\"db.service\"]\nwants = [\"cache.service\"]\nafter = [\"db.service\", \"cache.service\"]\n\
             [service]\nexec = [\"/bin/true\"]\n[namespaces]\nnet = \"pod.service\"\n",
        ),
        write(
            tmp.path(),
            "log.service.toml",
            "[unit]\nbefore = [\"db.service\"]\n[service]\nexec = [\"/bin/true\"]\n",
        ),
    ];
    let set = load_files(&files);
    assert!(set.diagnostics.is_empty(), "{:#?}", set.diagnostics);
    let tx = set.graph.transaction(&[n("web.service")]);
    let pulled: Vec<String> = tx.iter().map(|(u, p)| format!("{u}:{p:?}")).collect();
    assert_eq!(
        pulled,
        [
            "-.slice:Requires",
            "cache.service:Wants",
            "db.service:Requires",
            "pod.service:Requires",
            "system.slice:Requires",
            "web.service:Requires",
        ]
    );
    let set_names: BTreeSet<UnitName> = tx.keys().cloned().chain([n("log.service")]).collect();
    let layers = set.graph.start_layers(&set_names);
    let shown: Vec<Vec<&str>> = layers
        .iter()
        .map(|l| l.iter().map(UnitName::as_str).collect())
        .collect();
    assert_eq!(
        shown,
        vec![
            vec!["-.slice"],
            vec!["system.slice"],
            vec!["cache.service", "log.service", "pod.service"],
            vec!["db.service"],
            vec!["web.service"],
        ]
    );
    let stop = set.graph.stop_layers(&set_names);
    assert_eq!(stop.first().unwrap(), &vec![n("web.service")]);
    assert_eq!(stop.last().unwrap(), &vec![n("-.slice")]);
}

#[test]
fn cycles_refuse_every_unit_in_them_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let files = vec![
        write(
            tmp.path(),
            "a.service.toml",
            "[unit]\nafter = [\"b.service\"]\n[service]\nexec = [\"/bin/true\"]\n",
        ),
        write(
            tmp.path(),
            "b.service.toml",
            "[unit]\nafter = [\"c.service\"]\n[service]\nexec = [\"/bin/true\"]\n",
        ),
        write(
            tmp.path(),
            "c.service.toml",
            "[unit]\nafter = [\"a.service\"]\n[service]\nexec = [\"/bin/true\"]\n",
        ),
        write(
            tmp.path(),
            "d.service.toml",
            "[unit]\nafter = [\"a.service\"]\n[service]\nexec = [\"/bin/true\"]\n",
        ),
    ];
    let set = load_files(&files);
    let errors: Vec<String> = set.errors().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("ordering cycle: a.service → b.service → c.service → a.service"),
        "{}",
        errors[0]
    );
    for u in ["a.service", "b.service", "c.service"] {
        assert!(matches!(set.units[&n(u)].state, LoadState::Error(_)), "{u}");
    }
    assert!(set.get(&n("d.service")).is_some());
}

#[test]
fn verify_host_checks_what_depends_on_this_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let good = write(
        tmp.path(),
        "good.service.toml",
        "[service]\nexec = [\"/bin/sh\", \"-c\", \"true\"]\nuser = \"root\"\nworking-directory = \"/tmp\"\n",
    );
    let bad = write(
        tmp.path(),
        "bad.service.toml",
        "[service]\nexec = [\"/nonexistent/prog\"]\nuser = \"no-such-user-x\"\ngroup = \"no-such-group-x\"\n\
         working-directory = \"/nonexistent-dir\"\nstdout = \"file:/nonexistent-dir/out.log\"\n\
         [resources]\nio-max = [{ device = \"/etc/passwd\", rbps = \"1M\" }]\n\
         [namespaces]\nroot = \"/nonexistent-root\"\nmount = true\nbind = [{ source = \"/nonexistent-src\", target = \"/x\" }]\n",
    );
    let bin = assert_cmd::cargo::cargo_bin!("corralctl");
    // Without --host the machine is not consulted: both files are valid.
    let out = Command::new(bin)
        .arg("verify")
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(bin)
        .args(["verify", "--host"])
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        "[service] exec: /nonexistent/prog: No such file or directory",
        "[service] user: no user \"no-such-user-x\" on this machine",
        "[service] group: no group \"no-such-group-x\" on this machine",
        "[service] working-directory: /nonexistent-dir is not a directory",
        "[service] stdout: the directory of /nonexistent-dir/out.log does not exist",
        "[resources] io-max: /etc/passwd is not a block device",
        "[namespaces] root: /nonexistent-root is not a directory",
        "[namespaces] bind: source /nonexistent-src does not exist",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("good.service"), "{stderr}");
}
