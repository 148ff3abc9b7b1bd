//! Who is asking: people through sign-in sessions, programs through API tokens.

pub mod microsoft;
pub mod password;
pub mod session;
pub mod token;

pub use session::SignedIn;
pub use token::ApiPrincipal;
