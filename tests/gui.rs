//! The window, driven headless with egui_kittest.

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use poisonscope::ui::App;

#[test]
fn opens_on_the_demo_set() {
    let mut app = App::new(None);
    let mut harness = Harness::new_ui(|ui| app.root_ui(ui));
    harness.run();
    harness.get_by_label("poisonscope");
    harness.get_by_label_contains("8000 training / 2000 test images");
    harness.get_by_label("805"); // training digits of class 2
}

#[test]
fn shows_a_load_error_in_the_window() {
    let mut app = App::new(Some("/no/such/dataset"));
    let mut harness = Harness::new_ui(|ui| app.root_ui(ui));
    harness.run();
    harness.get_by_label_contains("/no/such/dataset: no such file or folder");
}
