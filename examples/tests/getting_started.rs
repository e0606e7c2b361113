//! The README's Getting started program (`examples/getting_started.rs`) runs and prints what
//! the README says: a service of its own, a master, two nodes and a caller in one process.

#[path = "../examples/getting_started.rs"]
#[allow(dead_code)]
mod getting_started;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_getting_started_program_runs() {
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        getting_started::run(&mut out),
    )
    .await
    .expect("within 60 s")
    .expect("the program runs");
    let stdout = String::from_utf8(out).unwrap();
    assert!(stdout.contains("97 is prime: true"), "{stdout}");
    assert!(stdout.contains("primes below 100000: 9592"), "{stdout}");
    assert!(stdout.contains("7919 is prime: true (node "), "{stdout}");
    assert!(
        stdout.contains("the endless count: stopped at its deadline"),
        "{stdout}"
    );
}
