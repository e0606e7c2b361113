//! [`with_setters!`](crate::with_setters): the `with_…` builder methods of the workspace's
//! `#[non_exhaustive]` configuration structs, one per field, written once here instead of a
//! dozen near-identical methods in each struct. (Method names are listed, not pasted together:
//! `macro_rules!` cannot build identifiers, and this is not worth a proc-macro dependency.)

/// Implements `pub fn $method(self, value: $ty) -> Self`, setting `$field`, on `$type` for each
/// `$method => $field: $ty`. Listed under `options:` instead, a field of type `Option<T>` is
/// set to `Some(value)` from a plain `T`.
///
/// ```
/// #[derive(Debug, Default)]
/// #[non_exhaustive]
/// pub struct Limits {
///     /// Connections at once.
///     pub max: usize,
///     /// An optional cap.
///     pub cap: Option<u32>,
/// }
/// distribution_shared::with_setters!(Limits { with_max => max: usize; options: with_cap => cap: u32 });
/// let limits = Limits::default().with_max(3).with_cap(7);
/// assert_eq!((limits.max, limits.cap), (3, Some(7)));
/// ```
#[macro_export]
macro_rules! with_setters {
    ($type:ty {
        $($method:ident => $field:ident : $ty:ty),* $(,)?
        $(; options: $($omethod:ident => $ofield:ident : $oty:ty),* $(,)?)?
    }) => {
        impl $type {
            $(
                #[doc = concat!("This value with [`", stringify!($field), "`](Self::", stringify!($field), ") set.")]
                pub fn $method(mut self, $field: $ty) -> Self {
                    self.$field = $field;
                    self
                }
            )*
            $($(
                #[doc = concat!("This value with [`", stringify!($ofield), "`](Self::", stringify!($ofield), ") set to `Some`.")]
                pub fn $omethod(mut self, $ofield: $oty) -> Self {
                    self.$ofield = Some($ofield);
                    self
                }
            )*)?
        }
    };
}
