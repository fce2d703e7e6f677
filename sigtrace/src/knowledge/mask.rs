//! `sigtrace mask MASK...`: decode signal masks into canonical signal names (aliases only on
//! request), optionally as a table or with the bit string, or as JSON.
//!
//! Every mask is parsed before anything is printed, so a typo in the third argument does
//! not leave two decoded masks and an error interleaved.

use super::style::{Paint, Style};
use super::{Error, MaskArgs, OutputFormat};
use crate::output::json::{Mask, SCHEMA_VERSION};
use crate::signals::{MaskFormat, SigSet, Signal};
use serde::Serialize;
use std::io::Write;

/// One decoded mask, as JSON prints it: a record with `v` and `type` like every other.
#[derive(Serialize)]
struct MaskJson<'a> {
    v: u32,
    r#type: &'static str,
    /// The argument as given.
    input: &'a str,
    /// The label of a pasted /proc line ("SigCgt"), if there was one.
    label: Option<&'a str>,
    hex: Mask,
    /// Decimal as a string: JSON readers that use doubles would round a 64-bit value.
    decimal: String,
    bits: String,
    count: usize,
    signals: Vec<SignalJson>,
}

#[derive(Serialize)]
struct SignalJson {
    number: i32,
    name: String,
    aliases: &'static [&'static str],
    default_action: &'static str,
    description: &'static str,
}

/// A parsed argument.
struct Decoded<'a> {
    input: &'a str,
    label: Option<&'a str>,
    set: SigSet,
}

pub(super) fn run(args: &MaskArgs, out: &mut dyn Write) -> Result<(), Error> {
    let decoded = args
        .masks
        .iter()
        .map(|input| {
            let set = if args.decimal {
                SigSet::parse_as(input, MaskFormat::Decimal)?
            } else {
                SigSet::parse(input)?
            };
            let label = input
                .split_once(':')
                .map(|(label, _)| label.trim())
                .filter(|label| !label.is_empty());
            Ok(Decoded { input, label, set })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    match args.output.format {
        OutputFormat::Json => {
            for mask in &decoded {
                let json = MaskJson {
                    v: SCHEMA_VERSION,
                    r#type: "mask",
                    input: mask.input,
                    label: mask.label,
                    hex: Mask(mask.set.0),
                    decimal: mask.set.0.to_string(),
                    bits: mask.set.bits(),
                    count: mask.set.len(),
                    signals: mask.set.iter().map(signal_json).collect(),
                };
                serde_json::to_writer(&mut *out, &json).map_err(std::io::Error::from)?;
                writeln!(out)?;
            }
        }
        OutputFormat::Text => {
            let style = Style::new(args.output.color);
            for (index, mask) in decoded.iter().enumerate() {
                if index > 0 {
                    writeln!(out)?;
                }
                write_text(out, args, style, mask)?;
            }
        }
    }
    Ok(())
}

fn signal_json(signal: Signal) -> SignalJson {
    SignalJson {
        number: signal.0,
        name: signal.name().into_owned(),
        aliases: signal.aliases(),
        default_action: signal.default_action().as_str(),
        description: signal.description(),
    }
}

/// A name, followed by its aliases when asked: "SIGABRT/SIGIOT".
fn display_name(signal: Signal, aliases: bool) -> String {
    let mut name = signal.name().into_owned();
    if aliases {
        for alias in signal.aliases() {
            name.push('/');
            name.push_str(alias);
        }
    }
    name
}

/// ```text
/// SigCgt 0x000000004b813eff (decimal 1266761471, 19 signals)
/// SIGHUP SIGINT ...
/// ```
fn write_text(
    out: &mut dyn Write,
    args: &MaskArgs,
    style: Style,
    mask: &Decoded<'_>,
) -> Result<(), Error> {
    let set = mask.set;
    let count = match set.len() {
        1 => "1 signal".to_owned(),
        n => format!("{n} signals"),
    };
    let label = mask
        .label
        .map(|label| format!("{label} "))
        .unwrap_or_default();
    let heading = format!("{label}{} (decimal {}, {count})", set.hex(), set.0);
    writeln!(out, "{}", style.paint(Paint::Heading, &heading))?;
    if args.bits {
        writeln!(out, "bits {}", set.bits())?;
    }
    if set.is_empty() {
        writeln!(out, "(no signals)")?;
    } else if args.table {
        let name_width = set
            .iter()
            .map(|signal| display_name(signal, args.aliases).len())
            .max()
            .unwrap_or(0)
            .max("NAME".len());
        writeln!(
            out,
            "{:>3}  {:>3}  {:<name_width$}  {:<6}  DESCRIPTION",
            "BIT", "NUM", "NAME", "ACTION"
        )?;
        for signal in set.iter() {
            writeln!(
                out,
                "{:>3}  {:>3}  {:<name_width$}  {:<6}  {}",
                signal.0 - 1,
                signal.0,
                display_name(signal, args.aliases),
                signal.default_action().as_str(),
                signal.description()
            )?;
        }
    } else {
        let names: Vec<String> = set
            .iter()
            .map(|signal| display_name(signal, args.aliases))
            .collect();
        writeln!(out, "{}", names.join(" "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{ColorChoice, OutputArgs};
    use super::*;

    fn mask_args(masks: &[&str]) -> MaskArgs {
        MaskArgs {
            masks: masks.iter().map(|m| m.to_string()).collect(),
            aliases: false,
            table: false,
            bits: false,
            decimal: false,
            output: OutputArgs {
                format: OutputFormat::Text,
                color: ColorChoice::Never,
            },
        }
    }

    fn render(args: &MaskArgs) -> String {
        let mut out = Vec::new();
        let result = run(args, &mut out);
        assert!(result.is_ok(), "{result:?}");
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn names_are_canonical_unless_aliases_are_asked_for() {
        let plain = render(&mask_args(&["0x10022"]));
        assert_eq!(
            plain,
            "0x0000000000010022 (decimal 65570, 3 signals)\nSIGINT SIGABRT SIGCHLD\n"
        );
        let mut args = mask_args(&["0x10022"]);
        args.aliases = true;
        assert!(render(&args).contains("SIGINT SIGABRT/SIGIOT SIGCHLD/SIGCLD\n"));
    }

    #[test]
    fn labels_bits_tables_and_empty_masks() {
        let mut args = mask_args(&["SigCgt:\t0000000000014002", "0"]);
        args.bits = true;
        args.table = true;
        let text = render(&args);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "SigCgt 0x0000000000014002 (decimal 81922, 3 signals)"
        );
        assert!(lines[1].starts_with("bits 0b00000000_"));
        assert!(lines[2].starts_with("BIT  NUM  NAME"));
        assert!(lines[3].starts_with("  1    2  SIGINT "));
        assert_eq!(lines[6], "");
        assert_eq!(lines[7], "0x0000000000000000 (decimal 0, 0 signals)");
        assert_eq!(lines.last(), Some(&"(no signals)"));
    }

    #[test]
    fn json_is_one_object_per_mask() {
        let mut args = mask_args(&["0x4b813eff", "SigIgn: 0000000000000004"]);
        args.output.format = OutputFormat::Json;
        let text = render(&args);
        let objects = crate::output::tests::schema_valid_lines(text.as_bytes());
        assert_eq!(objects.len(), 2);
        assert_eq!(
            (&objects[0]["v"], &objects[0]["type"]),
            (&3.into(), &"mask".into())
        );
        assert_eq!(objects[0]["decimal"], "1266761471");
        assert_eq!(
            objects[0]["bits"],
            "0b00000000_00000000_00000000_00000000_01001011_10000001_00111110_11111111"
        );
        assert_eq!(objects[0]["count"], 19);
        assert_eq!(objects[0]["hex"], "0x000000004b813eff");
        assert_eq!(objects[0]["label"], serde_json::Value::Null);
        assert_eq!(objects[0]["signals"][5]["aliases"][0], "SIGIOT");
        assert_eq!(objects[1]["label"], "SigIgn");
        assert_eq!(objects[1]["signals"][0]["name"], "SIGQUIT");
        assert_eq!(objects[1]["signals"][0]["default_action"], "Core");
    }

    #[test]
    fn decimal_flag_reads_leading_zeros_as_decimal() {
        let mut args = mask_args(&["010"]);
        args.decimal = true;
        assert!(render(&args).starts_with("0x000000000000000a "));
        assert!(render(&mask_args(&["010"])).starts_with("0x0000000000000010 "));
    }
}
