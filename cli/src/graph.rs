//! `weir graph JOB`: print a job's graph in Graphviz DOT.

use crate::Error;

/// Prints `job`'s graph in DOT on stdout.
pub fn run(job: &str) -> Result<(), Error> {
    let pipeline = match job {
        "demo" => weir_workloads::jobs::demo(0, None).0,
        // Building the job reads nothing: the input is opened when the run starts.
        "etl" => {
            let config = weir_workloads::jobs::etl::EtlConfig::new("orders.csv", "./out");
            weir_workloads::jobs::etl::build(&config)?.pipeline
        }
        _ => return Err(unknown_job(job)),
    };
    print!("{}", pipeline.to_dot());

    Ok(())
}

fn unknown_job(job: &str) -> Error {
    format!(
        "unknown job `{job}`; known jobs: {}",
        weir_workloads::jobs::JOBS.join(", ")
    )
    .into()
}
