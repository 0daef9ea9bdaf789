//! One library through two transports at once: devices on a provider's API and a device on
//! the folder transport over the directory the provider's server serves (its desktop client's
//! copy). Instantiated for every transport whose test medium serves a directory, for every
//! engine × store.

#![cfg(feature = "folder")]

/// `folder_and_api_devices_share_a_library` for one transport factory, every engine × store.
macro_rules! mixed {
    ($($name:ident $t:ty [$c:meta]),* $(,)?) => {
        $(
            #[cfg($c)]
            mod $name {
                #[allow(unused_imports)]
                use onefolder_conformance::factories::*;
                onefolder_conformance::for_each_engine!(engines);
                macro_rules! engines {
                    () => {
                        onefolder_conformance::for_each_store!(stores);
                    };
                }
                use engines;
                macro_rules! stores {
                    () => {
                        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                        async fn folder_and_api_devices_share_a_library() {
                            onefolder_conformance::scenarios::folder_and_api_devices_share_a_library::<
                                onefolder_conformance::Combo<super::E, S, $t>,
                            >(onefolder_conformance::Env::PLAIN)
                            .await;
                        }
                    };
                }
                use stores;
            }
        )*
    };
}

mixed! {
    folder Folder [feature = "folder"],
    gdrive Gdrive [feature = "gdrive"],
    dropbox Dropbox [feature = "dropbox"],
    webdav Webdav [feature = "webdav"],
}
