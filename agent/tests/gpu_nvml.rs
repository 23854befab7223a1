//! The GPU collector against whatever NVML this machine has. Without the NVIDIA driver
//! (`/proc/driver/nvidia/version` absent) construction must fail as Unavailable, naming NVML,
//! so only this collector is disabled. With the driver it must find the GPUs and read them.

use fleetgate_agent::collectors::gpu::GpuCollector;
use fleetgate_agent::collectors::{CollectError, Collector, MetricBuffer};

fn driver_present() -> bool {
    std::path::Path::new("/proc/driver/nvidia/version").exists()
}

#[tokio::test]
async fn gpu_collector_follows_the_driver() {
    match (driver_present(), GpuCollector::new()) {
        (false, Err(CollectError::Unavailable(msg))) => {
            assert!(msg.contains("NVML"), "message should name NVML: {msg}");
            eprintln!("no NVIDIA driver here; GPU collector unavailable as expected: {msg}");
        }
        (false, other) => panic!("no driver, yet: {other:?}"),
        (true, Ok(mut collector)) => {
            assert!(collector.device_count() > 0);
            assert_eq!(collector.name(), "gpu");
            let mut out = MetricBuffer::new();
            collector.collect(&mut out).await.expect("collect");
            let text = fleetgate_shared::text::render(out.families());
            // Printed so a run on a GPU machine records what came out.
            println!("{text}");
            let temps = out
                .families()
                .iter()
                .find(|f| f.name == "DCGM_FI_DEV_GPU_TEMP")
                .expect("DCGM_FI_DEV_GPU_TEMP");
            assert_eq!(temps.series.len(), collector.device_count() as usize);
            fleetgate_shared::text::parse(&text).expect("exposition parses");
        }
        (true, Err(e)) => panic!("NVIDIA driver present but NVML failed: {e}"),
    }
}
