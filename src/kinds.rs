//! [`named_kinds!`]: a fieldless enum whose every variant has a config name and a line of help,
//! with `ALL` (the order menus and reports list them), `name()` and `help()`. The attack and
//! detector registries are written with it.

/// `named_kinds! { /// doc  pub enum Kind { Variant = "name", "help"; ... } }`
macro_rules! named_kinds {
    ($(#[$meta:meta])* $vis:vis enum $enum:ident { $($kind:ident = $name:literal, $help:expr;)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        $vis enum $enum {
            $(#[serde(rename = $name)] $kind,)*
        }

        impl $enum {
            /// Every kind, in the order the window and the reports list them.
            pub const ALL: [Self; [$($name),*].len()] = [$(Self::$kind,)*];

            /// The name used in configs and reports.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$kind => $name,)*
                }
            }

            /// One line on what it does (the window's hover help).
            pub fn help(self) -> &'static str {
                match self {
                    $(Self::$kind => $help,)*
                }
            }
        }
    };
}

pub(crate) use named_kinds;
