// Copyright 2020 The Evcxr Authors.
//
// Licensed under the Apache License, Version 2.0 <LICENSE or
// https://www.apache.org/licenses/LICENSE-2.0> or the MIT license <LICENSE
// or https://opensource.org/licenses/MIT>, at your option. This file may not be
// copied, modified, or distributed except according to those terms.

use anyhow::Context;
use anyhow::Result;
use anyhow::anyhow;
use anyhow::bail;
use once_cell::sync::Lazy;
use ra_ap_base_db::SourceRoot;
use ra_ap_base_db::salsa;
use ra_ap_base_db::salsa::Database as _;
use ra_ap_hir as ra_hir;
use ra_ap_ide as ra_ide;
use ra_ap_ide::CompletionFieldsToResolve;
use ra_ap_ide::FileRange;
use ra_ap_ide::RaFixtureConfig;
use ra_ap_ide::SubstTyLen;
use ra_ap_ide_db::FxHashMap;
use ra_ap_ide_db::SnippetCap;
use ra_ap_ide_db::imports::insert_use::ImportGranularity;
use ra_ap_ide_db::imports::insert_use::InsertUseConfig;
use ra_ap_paths::AbsPathBuf;
use ra_ap_project_model::CargoConfig;
use ra_ap_project_model::ProjectManifest;
use ra_ap_project_model::ProjectWorkspace;
use ra_ap_project_model::RustLibSource;
use ra_ap_syntax::TextRange;
use ra_ap_syntax::ast::AstNode;
use ra_ap_syntax::ast::{self};
use ra_ap_vfs as ra_vfs;
use ra_ap_vfs::FileId;
use ra_ap_vfs::loader::LoadingProgress;
use ra_ap_vfs_notify as vfs_notify;
use ra_ide::Edition;
use ra_ide::HoverConfig;
use ra_ide::HoverResult;
use ra_ide::RangeInfo;
use std::collections::HashMap;
use std::convert::TryFrom;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

pub(crate) const EDITION: Edition = Edition::Edition2024;

pub(crate) struct RustAnalyzer {
    with_sysroot: bool,
    root_directory: AbsPathBuf,
    analysis_host: ra_ide::AnalysisHost,
    vfs: ra_vfs::Vfs,
    loader: vfs_notify::NotifyHandle,
    message_receiver: crossbeam_channel::Receiver<ra_vfs::loader::Message>,
    last_cargo_toml: Option<Vec<u8>>,
    source_file: AbsPathBuf,
    source_file_id: FileId,
    current_source: String,
}

/// A function appended to the analysis source while warming up: its `let` makes rust-analyzer
/// resolve names (the standard library's and dependencies' definitions), infer a type and set up
/// its trait solver the way a cell's `let` does, so that the first such cell finds that done.
/// (Warming up with `let`s of std collections too cost 23 MB more and gained nothing measurable.)
const WARM_UP_FN: &str = "evcxr_warm_up";
const WARM_UP_CODE: &str = "
#[allow(unused_variables)]
fn evcxr_warm_up() {
    let evcxr_warm_up = 1 + 1;
}
";

/// When rust-analyzer works and when it lets go of its analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalyzerPolicy {
    /// Analyse in the background ahead of need: at start and after each cell whose Cargo.toml
    /// changed (fast first answers; the analysis of std holds a few hundred MB).
    pub warm_ahead: bool,
    /// Drop the analysis after this long without use (None: keep it), counted from the last
    /// request, however long its analysis took. It is rebuilt on the next use; until then
    /// completions answer from what the session knows.
    pub retire_after: Option<std::time::Duration>,
}

impl Default for AnalyzerPolicy {
    fn default() -> Self {
        AnalyzerPolicy {
            warm_ahead: true,
            retire_after: None,
        }
    }
}

/// rust-analyzer, which may be lent to a background thread: a warm-up, a completion that ran
/// past its deadline, or an idle countdown that drops the analysis.
///
/// Loading a workspace and analysing the standard library takes rust-analyzer seconds and a
/// few hundred MB. With [`AnalyzerPolicy::warm_ahead`] that is done in the background after
/// the context starts and after every cell, while the next cell compiles or the user types;
/// otherwise on first use. Code that needs the analyzer waits for a background analysis to
/// finish; running user code pauses it (cancels it, keeping what it has computed so far in
/// rust-analyzer's caches) so that measurements in cells don't compete with it for CPU. After
/// each use a job counts down [`AnalyzerPolicy::retire_after`]; if nothing needs the analyzer
/// meanwhile, it drops the analysis and returns the memory to the system.
pub(crate) struct Analyzer {
    idle: Option<RustAnalyzer>,
    job: Option<Job>,
    /// The Cargo.toml for which an analysis last ran to the end; None until one has since
    /// rust-analyzer started or last let go of its analysis.
    warmed_for: Option<Vec<u8>>,
    policy: AnalyzerPolicy,
}

struct Job {
    thread: std::thread::JoinHandle<JobEnd>,
    analyzer: Arc<Mutex<Option<RustAnalyzer>>>,
    cancel: salsa::CancellationToken,
    /// Set with `cancel`, and unlike salsa's token not reset when the analysis unwinds.
    stop: Arc<AtomicBool>,
    /// True while the job analyses (not in its idle countdown).
    busy: Arc<AtomicBool>,
    cargo_toml: Vec<u8>,
}

/// How a background job ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum JobEnd {
    /// Its analysis ran to the end: warm for its Cargo.toml.
    Warm,
    /// Stopped or failed before the end.
    Cold,
    /// Nothing used the analyzer for the idle time: the analysis was dropped.
    Retired,
}

type Work = Box<dyn FnOnce(&mut RustAnalyzer) -> bool + Send>;

impl Analyzer {
    pub(crate) fn new(analyzer: RustAnalyzer) -> Analyzer {
        Analyzer {
            idle: Some(analyzer),
            job: None,
            warmed_for: None,
            policy: AnalyzerPolicy::default(),
        }
    }

    pub(crate) fn set_policy(&mut self, policy: AnalyzerPolicy) {
        self.policy = policy;
    }

    /// The analyzer, after any background analysis has finished.
    pub(crate) fn get(&mut self) -> &mut RustAnalyzer {
        self.settle(false);
        self.idle
            .as_mut()
            .expect("rust-analyzer is back from its background job")
    }

    /// Stops a running background job and waits for it.
    pub(crate) fn pause(&mut self) {
        self.settle(true);
    }

    fn busy(&self) -> bool {
        self.job
            .as_ref()
            .is_some_and(|j| j.busy.load(Ordering::SeqCst) && !j.thread.is_finished())
    }

    /// True when rust-analyzer has analysed the current Cargo.toml and is not busy: asking it
    /// for types costs little. (Otherwise the first answer may take seconds.)
    pub(crate) fn is_ready(&mut self, config: &crate::eval_context::Config) -> bool {
        if self.busy() {
            return false;
        }
        self.settle(false);
        let cargo_toml = std::fs::read(config.crate_dir().join("Cargo.toml")).ok();
        cargo_toml.is_some() && self.warmed_for == cargo_toml
    }

    /// Records that the analyzer has analysed a cell for the current Cargo.toml, which warms it
    /// as well as a warm-up would: the next warm-up for this Cargo.toml is skipped.
    pub(crate) fn mark_warm(&mut self) {
        if let Some(analyzer) = &self.idle {
            self.warmed_for.clone_from(&analyzer.last_cargo_toml);
        }
    }

    fn settle(&mut self, cancel: bool) {
        let Some(job) = self.job.take() else {
            return;
        };
        // Whoever waits doesn't want the job's idle tail; only a pause cancels its analysis.
        job.stop.store(true, Ordering::SeqCst);
        if cancel {
            job.cancel.cancel();
        }
        let end = job.thread.join().unwrap_or(JobEnd::Cold);
        let analyzer = job
            .analyzer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(analyzer) = &analyzer {
            // A cancellation that arrived after the job's last query is still pending on the
            // database; leaving an attach scope clears it, so the next query isn't cancelled.
            salsa::attach(analyzer.analysis_host.raw_database(), || ());
        }
        match end {
            JobEnd::Warm => self.warmed_for = Some(job.cargo_toml),
            JobEnd::Retired => self.warmed_for = None,
            JobEnd::Cold => {}
        }
        self.idle = analyzer;
    }

    /// Lends the analyzer to a thread that waits `delay` (unless stopped), runs `work` (true:
    /// it analysed to the end), then counts down the idle time of the policy. Callers that
    /// want a result send it from `work`.
    fn spawn(&mut self, delay: std::time::Duration, work: Work) {
        self.settle(false);
        let Some(analyzer) = self.idle.take() else {
            return;
        };
        let cargo_toml = std::fs::read(analyzer.cargo_toml_filename()).unwrap_or_default();
        let cancel = analyzer.analysis_host.raw_database().cancellation_token();
        let stop = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicBool::new(true));
        let lent = Arc::new(Mutex::new(Some(analyzer)));
        let retire_after = self.policy.retire_after;
        let lent_at = std::time::Instant::now();
        let (in_thread, in_stop, in_busy) = (lent.clone(), stop.clone(), busy.clone());
        let spawned = std::thread::Builder::new()
            .name("ra-background".to_owned())
            .spawn(move || {
                let mut guard = in_thread.lock().unwrap_or_else(|p| p.into_inner());
                let Some(analyzer) = guard.as_mut() else {
                    return JobEnd::Cold;
                };
                let wait = |d: std::time::Duration| {
                    let started = std::time::Instant::now();
                    while started.elapsed() < d {
                        if in_stop.load(Ordering::SeqCst) {
                            return false;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    true
                };
                if !wait(delay) {
                    return JobEnd::Cold;
                }
                // Cancellation unwinds out of rust-analyzer's queries; anything else that goes
                // wrong only means the next use does the work itself.
                let warm = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(analyzer)))
                    .unwrap_or(false);
                in_busy.store(false, Ordering::SeqCst);
                // rust-analyzer drops replaced syntax trees on helper threads: give them a
                // moment (unless the job is being stopped), then return what they freed.
                wait(std::time::Duration::from_millis(300));
                release_free_memory();
                let end = if warm { JobEnd::Warm } else { JobEnd::Cold };
                let Some(idle) = retire_after else { return end };
                if !wait(idle.saturating_sub(lent_at.elapsed())) || analyzer.last_cargo_toml.is_none() {
                    return end;
                }
                match RustAnalyzer::new(std::path::Path::new(analyzer.root_directory.as_str())) {
                    Ok(fresh) => {
                        *analyzer = fresh;
                        wait(std::time::Duration::from_millis(300));
                        release_free_memory();
                        JobEnd::Retired
                    }
                    Err(_) => end,
                }
            });
        match spawned {
            Ok(thread) => {
                self.job = Some(Job {
                    thread,
                    analyzer: lent,
                    cancel,
                    stop,
                    busy,
                    cargo_toml,
                })
            }
            Err(_) => self.idle = lent.lock().unwrap_or_else(|p| p.into_inner()).take(),
        }
    }

    /// After a use of the analyzer: count down to dropping its analysis (when the policy says so).
    pub(crate) fn used(&mut self) {
        if self.policy.retire_after.is_some() && self.job.is_none() {
            self.spawn(std::time::Duration::ZERO, Box::new(|_| false));
            // The analysis is as warm as it was.
            if let Some(job) = &self.job {
                job.busy.store(false, Ordering::SeqCst);
            }
        }
    }

    /// Completions in `source` at `offset`, or [`NotReady`] when they cannot be had within
    /// `deadline`: a background analysis still runs, or the completion itself takes longer (the
    /// first one analyses the standard library). A completion that runs late goes on in the
    /// background, so its work is not lost: the next request waits for it (within its own
    /// deadline), and user code about to run pauses it.
    pub(crate) fn complete(
        &mut self,
        source: String,
        offset: usize,
        deadline: std::time::Duration,
    ) -> Result<Completions> {
        let started = std::time::Instant::now();
        // Until a first analysis has run to the end, the answer is seconds away (std's
        // analysis): the deadline is not waited for. A job already analysing goes on; if none
        // does, this completion starts one, and a later one finds it warm. (After a change of
        // Cargo.toml only the new dependencies are analysed: that is waited for.)
        if !self.busy() {
            // A job past its analysis (counting down its idle time) has its result.
            self.settle(false);
        }
        let cold = self.warmed_for.is_none();
        if cold && self.busy() {
            return Err(NotReady.into());
        }
        let deadline = if cold {
            std::time::Duration::ZERO
        } else {
            deadline
        };
        while self.busy() {
            if started.elapsed() >= deadline {
                return Err(NotReady.into());
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.spawn(
            std::time::Duration::ZERO,
            Box::new(move |analyzer| {
                let result = analyzer.set_source(source).and_then(|()| analyzer.completions(offset));
                let finished = result.is_ok();
                let _ = tx.send(result);
                finished
            }),
        );
        match rx.recv_timeout(deadline.saturating_sub(started.elapsed())) {
            Ok(result) => result,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(NotReady.into()),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                bail!("rust-analyzer stopped while completing")
            }
        }
    }

    /// Starts a background warm-up with `analysis_source` (the analysis code of the committed
    /// state), when the policy warms ahead and none ran to the end for the current Cargo.toml;
    /// otherwise only counts down to retiring. It begins after `delay`, unless stopped before:
    /// cells run back to back (Run All) then don't each start work only to cancel it.
    pub(crate) fn warm_up(&mut self, analysis_source: String, delay: std::time::Duration) {
        if self.job.is_some() {
            return;
        }
        if !self.policy.warm_ahead {
            return self.used();
        }
        let cargo_toml = match &self.idle {
            Some(analyzer) => std::fs::read(analyzer.cargo_toml_filename()).ok(),
            None => return,
        };
        if cargo_toml.is_none() || self.warmed_for == cargo_toml {
            return self.used();
        }
        let warm_source = analysis_source.clone() + WARM_UP_CODE;
        self.spawn(
            delay,
            Box::new(move |analyzer| {
                let warm = analyzer.set_source(warm_source).is_ok()
                    && analyzer.top_level_variables(WARM_UP_FN).is_some();
                if warm {
                    // Back to the state's own source, so what was computed only for the
                    // warm-up function is replaced now rather than after the next cell.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        if analyzer.set_source(analysis_source).is_ok() {
                            analyzer.top_level_variables("evcxr_analysis_wrapper");
                        }
                    }));
                }
                warm
            }),
        );
    }
}

/// Analysis frees much of what it allocates, but the allocator keeps it (in this thread's own
/// arena, which nothing else will reuse): hand it back to the system.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused pages of the allocator's arenas to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Drop for Analyzer {
    fn drop(&mut self) {
        if let Some(job) = &self.job {
            job.stop.store(true, Ordering::SeqCst);
            job.cancel.cancel();
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum TypeName {
    Named(String),
    Closure,
    Unknown,
}

#[derive(Debug)]
pub(crate) struct VariableInfo {
    /// The variable's type as Rust code, or None if we couldn't determine it.
    pub(crate) type_name: TypeName,
    /// Whether the variable is declared as mutable.
    pub(crate) is_mutable: bool,
}

impl RustAnalyzer {
    pub(crate) fn new(root_directory: &Path) -> Result<RustAnalyzer> {
        use ra_vfs::loader::Handle;
        let (message_sender, message_receiver) = crossbeam_channel::unbounded();
        let mut vfs = ra_vfs::Vfs::default();
        let root_directory = AbsPathBuf::try_from(
            root_directory
                .to_str()
                .context("Root directory is not UTF-8")?,
        )
        .map_err(|path| anyhow!("Evcxr tmpdir is not absolute: '{:?}'", path))?;
        let source_file = root_directory.join("src/lib.rs");
        // We need to write the file to the filesystem even though we subsequently set the file
        // contents via the vfs and change.change_file. This is because the loader checks for the
        // files existence when determining the crate structure.
        let src_dir = root_directory.join("src");
        std::fs::create_dir_all(&src_dir)
            .with_context(|| format!("Failed to create directory `{src_dir:?}`"))?;
        // Pre-allocate an ID for our main source file.
        let vfs_source_file: ra_vfs::VfsPath = source_file.clone().into();
        vfs.set_file_contents(vfs_source_file.clone(), Some(vec![]));
        let (source_file_id, _) = vfs.file_id(&vfs_source_file).unwrap();
        Ok(RustAnalyzer {
            with_sysroot: true,
            root_directory,
            analysis_host: Default::default(),
            vfs,
            loader: vfs_notify::NotifyHandle::spawn(message_sender),
            message_receiver,
            last_cargo_toml: None,
            source_file,
            source_file_id,
            current_source: String::new(),
        })
    }

    pub(crate) fn set_source(&mut self, source: String) -> Result<()> {
        self.current_source = source;
        let mut change = ra_hir::ChangeWithProcMacros::default();

        // The loader only needs the file to exist; its contents for analysis are set below. The
        // file itself belongs to the compiler, which may be writing it at this moment (while the
        // analyzer warms up in the background): create it if missing, never truncate it.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.source_file.as_path())
            .with_context(|| format!("Failed to create {:?}", self.source_file))?;

        // Check to see if we haven't yet loaded Cargo.toml, or if it's changed since we read it.
        let cargo_toml = Some(std::fs::read(self.cargo_toml_filename()).with_context(|| {
            format!(
                "Failed to read Cargo.toml from `{:?}`",
                self.cargo_toml_filename()
            )
        })?);
        if cargo_toml != self.last_cargo_toml {
            self.load_cargo_toml(&mut change)?;
            self.last_cargo_toml = cargo_toml;
        }
        // After loading, which may have read the file from disk: the source given wins.
        self.vfs.set_file_contents(
            self.source_file.clone().into(),
            Some(self.current_source.bytes().collect()),
        );
        change.change_file(self.source_file_id, Some(self.current_source.clone()));

        self.analysis_host.apply_change(change);
        Ok(())
    }

    /// Returns top-level variable names and their types in the specified function, or None when
    /// rust-analyzer cannot place the function in a module (its workspace is not loaded, or is
    /// being reloaded after a Cargo.toml change).
    pub(crate) fn top_level_variables(
        &self,
        function_name: &str,
    ) -> Option<HashMap<String, VariableInfo>> {
        use ra_ap_syntax::ast::HasModuleItem;
        use ra_ap_syntax::ast::HasName;
        let mut result = HashMap::new();
        let mut placed = true;
        let db = self.analysis_host.raw_database();
        let sema = ra_ide::Semantics::new(db);

        let source_file = sema.parse(ra_ap_base_db::EditionedFileId::new(
            db,
            self.source_file_id,
            EDITION,
        ));

        ra_ap_hir::attach_db(db, || {
            for item in source_file.items() {
                if let ast::Item::Fn(function) = item
                    && function
                        .name()
                        .map(|n| n.text() == function_name)
                        .unwrap_or(false)
                {
                    let Some(body) = function.body() else {
                        continue;
                    };
                    // Upstream unwraps this, which panics while the workspace is not loaded.
                    let Some(module) = sema.scope(function.syntax()).map(|scope| scope.module())
                    else {
                        placed = false;
                        continue;
                    };
                    for statement in body.statements() {
                        if let ast::Stmt::LetStmt(let_stmt) = statement
                            && let Some(pat) = let_stmt.pat()
                            && !add_variable_for_pattern(
                                &pat,
                                &sema,
                                let_stmt.ty(),
                                module,
                                &mut result,
                            )
                        {
                            // We didn't add a variable for `pat`, possibly because it's a
                            // more complex pattern that needs destructuring. Try for each
                            // sub pattern. This time, we ignore the explicit type, because
                            // it applies to the whole pattern, not to its parts. Note, this
                            // will attempt `pat` again, but that's OK, since it failed
                            // above, so will fail again.
                            for d in pat.syntax().descendants() {
                                if let Some(sub_pat) = ast::Pat::cast(d) {
                                    add_variable_for_pattern(
                                        &sub_pat,
                                        &sema,
                                        None,
                                        module,
                                        &mut result,
                                    );
                                }
                            }
                        }
                    }
                }
            }
        });

        placed.then_some(result)
    }

    fn load_cargo_toml(&mut self, change: &mut ra_hir::ChangeWithProcMacros) -> Result<()> {
        let manifest = ProjectManifest::from_manifest_file(self.cargo_toml_filename())?;
        let sysroot = if self.with_sysroot {
            Some(RustLibSource::Discover)
        } else {
            None
        };
        let config = CargoConfig {
            sysroot,
            ..CargoConfig::default()
        };
        let workspace = ProjectWorkspace::load(manifest, &config, &|_| {})?;
        let load = workspace
            .to_roots()
            .iter()
            .map(|root| {
                ra_vfs::loader::Entry::Directories(ra_vfs::loader::Directories {
                    extensions: vec!["rs".to_owned()],
                    include: root.include.clone(),
                    exclude: root.exclude.clone(),
                })
            })
            .collect();
        // Note, set_config is what triggers loading and calling the callback that we registered when we created self.loader.
        use ra_vfs::loader::Handle;
        self.loader.set_config(ra_vfs::loader::Config {
            version: 1,
            load,
            watch: vec![],
        });

        for message in &self.message_receiver {
            match message {
                ra_vfs::loader::Message::Progress {
                    n_total: _, n_done, ..
                } => {
                    if n_done == LoadingProgress::Finished {
                        break;
                    }
                }
                ra_vfs::loader::Message::Loaded { files }
                | ra_vfs::loader::Message::Changed { files } => {
                    for (path, contents) in files {
                        let vfs_path: ra_vfs::VfsPath = path.to_path_buf().into();
                        self.vfs
                            .set_file_contents(vfs_path.clone(), contents.clone());
                    }
                }
            }
        }

        for (file_id, changed_file) in self.vfs.take_changes() {
            let mut new_contents = None;
            if let ra_vfs::Change::Create(v, _hash) | ra_vfs::Change::Modify(v, _hash) =
                changed_file.change
                && let Ok(text) = std::str::from_utf8(&v)
            {
                new_contents = Some(text.to_owned());
            }
            change.change_file(file_id, new_contents);
        }
        change.set_roots(
            ra_vfs::file_set::FileSetConfig::default()
                .partition(&self.vfs)
                .into_iter()
                .map(SourceRoot::new_local)
                .collect(),
        );
        let (crate_graph, _) = workspace.to_crate_graph(
            &mut |path| {
                self.vfs
                    .file_id(&path.to_path_buf().into())
                    .map(|(id, _)| id)
            },
            &FxHashMap::default(),
        );

        change.set_crate_graph(crate_graph);
        Ok(())
    }

    fn cargo_toml_filename(&self) -> AbsPathBuf {
        self.root_directory.join("Cargo.toml")
    }

    /// Completions at `position` in the current source.
    pub(crate) fn completions(&self, position: usize) -> Result<Completions> {
        completions_in(&self.analysis_host.analysis(), self.source_file_id, &self.current_source, position)
    }
}

/// rust-analyzer could not answer in time.
#[derive(Debug)]
pub struct NotReady;

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rust-analyzer is still analysing")
    }
}

impl std::error::Error for NotReady {}

fn completions_in(
    analysis: &ra_ide::Analysis,
    file_id: FileId,
    current_source: &str,
    position: usize,
) -> Result<Completions> {
    {
        let mut completions = Vec::new();
        let mut range = None;
        let config = ra_ide::CompletionConfig {
            // Postfix completions rewrite the expression before the cursor, more than the
            // range a frontend replaces.
            enable_postfix_completions: false,
            snippet_cap: SnippetCap::new(true),
            enable_imports_on_the_fly: false,
            enable_self_on_the_fly: true,
            enable_private_editable: true,
            prefer_no_std: false,
            full_function_signatures: true,
            snippets: vec![],
            insert_use: InsertUseConfig {
                prefix_kind: ra_hir::PrefixKind::ByCrate,
                group: false,
                granularity: ImportGranularity::Item,
                enforce_granularity: false,
                skip_glob_imports: false,
            },
            // Insert the name only: a frontend inserts the match as text, so
            // placeholder arguments would land in the learner's code.
            callable: None,
            limit: None,
            prefer_prelude: false,
            enable_term_search: true,
            term_search_fuel: 400,
            prefer_absolute: false,
            add_semicolon_to_unit: false,
            fields_to_resolve: CompletionFieldsToResolve::empty(),
            exclude_flyimport: vec![],
            exclude_traits: &[],
            enable_auto_iter: true,
            enable_auto_await: true,
            ra_fixture: RaFixtureConfig::default(),
            add_colons_to_module: true,
        };
        if let Ok(Some(completion_items)) = analysis.completions(
            &config,
            ra_ide::FilePosition {
                file_id,
                offset: (position as u32).into(),
            },
            None,
        ) {
            for item in completion_items {
                use regex::Regex;
                static ARG_PLACEHOLDER: Lazy<Regex> =
                    Lazy::new(|| Regex::new("\\$\\{[0-9]+:([^}]*)\\}").unwrap());
                let mut indels = item.text_edit.iter();
                if let Some(indel) = indels.next() {
                    let text_to_delete = &current_source[indel.delete];
                    // Rust analyzer returns all available methods/fields etc. It's up to us to
                    // decide how what we filter and what we keep.
                    if !item.lookup().starts_with(text_to_delete) {
                        continue;
                    }
                    // One range for all matches: an item that would replace another
                    // part of the text, or edit in several places, is left out.
                    if range.is_some_and(|r| r != indel.delete) || indels.next().is_some() {
                        continue;
                    }
                    range = Some(indel.delete);
                    completions.push(Completion {
                        code: ARG_PLACEHOLDER
                            .replace_all(&indel.insert, "$1")
                            .replace("$0", ""),
                        kind: jupyter_kind(item.kind),
                        label: item.label.primary.to_string(),
                        signature: item.detail.clone().filter(|d| !d.is_empty()),
                    });
                }
            }
        }
        Ok(Completions {
            completions,
            start_offset: range.map(|range| range.start().into()).unwrap_or(position),
            end_offset: range.map(|range| range.end().into()).unwrap_or(position),
        })
    }
}

impl RustAnalyzer {

    pub(crate) fn hover(
        &self,
        text_range: TextRange,
        is_mark_down: bool,
    ) -> Result<Option<RangeInfo<HoverResult>>> {
        use ra_ide::HoverDocFormat as hdf;
        let hover_config: HoverConfig = HoverConfig {
            links_in_hover: true,
            memory_layout: None,
            documentation: true,
            keywords: true,
            format: if is_mark_down {
                hdf::Markdown
            } else {
                hdf::PlainText
            },
            max_trait_assoc_items_count: None,
            max_fields_count: Some(5),
            max_enum_variants_count: Some(5),
            max_subst_ty_len: SubstTyLen::Unlimited,
            show_drop_glue: false,
            ra_fixture: RaFixtureConfig::default(),
        };
        let file_range = FileRange {
            file_id: self.source_file_id,
            range: text_range,
        };
        match self
            .analysis_host
            .analysis()
            .hover(&hover_config, file_range)
        {
            Ok(range_info) => Ok(range_info),
            _ => bail!("hover fail"),
        }
    }
}

/// If `pat` represents a variable that is being defined, then record it in `result` and return
/// true.
fn add_variable_for_pattern(
    pat: &ast::Pat,
    sema: &ra_hir::Semantics<ra_ide::RootDatabase>,
    explicit_type: Option<ast::Type>,
    module: ra_hir::Module,
    result: &mut HashMap<String, VariableInfo>,
) -> bool {
    use ra_ap_syntax::ast::HasName;
    if let ast::Pat::IdentPat(ident_pat) = pat
        && let Some(name) = ident_pat.name()
    {
        let type_name = get_type_name(
            explicit_type,
            sema.type_of_pat(pat).map(|info| info.original()),
            sema,
            module,
        );
        result.insert(
            name.text().to_string(),
            VariableInfo {
                type_name,
                is_mutable: ident_pat.mut_token().is_some(),
            },
        );
        return true;
    }
    false
}

fn get_type_name(
    explicit_type: Option<ast::Type>,
    inferred_type: Option<ra_hir::Type>,
    sema: &ra_hir::Semantics<ra_ide::RootDatabase>,
    module: ra_hir::Module,
) -> TypeName {
    use ra_hir::HirDisplay;
    if let Some(explicit_type) = explicit_type {
        let type_name = explicit_type.syntax().text().to_string();
        if is_type_valid(&type_name) {
            return TypeName::Named(type_name);
        }
    }
    if let Some(ty) = inferred_type {
        if ty.is_closure() {
            return TypeName::Closure;
        }
        if let Ok(type_name) = ty.display_source_code(sema.db, module.into(), true)
            && is_type_valid(&type_name)
        {
            return TypeName::Named(type_name);
        }
    }
    TypeName::Unknown
}

/// Completions found in a particular context.
#[derive(Default)]
pub struct Completions {
    pub completions: Vec<Completion>,
    pub start_offset: usize,
    pub end_offset: usize,
}

/// A code completion. We use our own type rather than exposing rust-analyzer's CompletionItem,
/// since rust-analyzer is an internal implementation detail, so we don't want to expose it in a
/// public API.
#[derive(Debug, Eq, PartialEq)]
pub struct Completion {
    /// The text that replaces the completed range (a name, without arguments).
    pub code: String,
    pub kind: &'static str,
    pub label: String,
    /// The item's signature or type, for showing beside it.
    pub signature: Option<String>,
}

fn jupyter_kind(kind: ra_ide::CompletionItemKind) -> &'static str {
    use ra_ap_ide_db::SymbolKind;
    use ra_ide::CompletionItemKind as K;
    match kind {
        K::SymbolKind(SymbolKind::Function | SymbolKind::Method) => "function",
        K::SymbolKind(
            SymbolKind::Struct
            | SymbolKind::Enum
            | SymbolKind::Union
            | SymbolKind::Trait
            | SymbolKind::TypeAlias
            | SymbolKind::TypeParam
            | SymbolKind::SelfType,
        ) => "class",
        K::SymbolKind(SymbolKind::Module | SymbolKind::CrateRoot | SymbolKind::ToolModule) => {
            "module"
        }
        K::SymbolKind(
            SymbolKind::Const
            | SymbolKind::Static
            | SymbolKind::ConstParam
            | SymbolKind::Variant
            | SymbolKind::Field
            | SymbolKind::Local
            | SymbolKind::SelfParam
            | SymbolKind::ValueParam
            | SymbolKind::Label,
        )
        | K::Binding
        | K::InferredType => "instance",
        K::SymbolKind(
            SymbolKind::Macro
            | SymbolKind::ProcMacro
            | SymbolKind::Derive
            | SymbolKind::DeriveHelper
            | SymbolKind::Attribute
            | SymbolKind::BuiltinAttr,
        ) => "function",
        K::Keyword => "keyword",
        K::Snippet | K::BuiltinType | K::UnresolvedReference | K::Expression => "instance",
        _ => "instance",
    }
}

/// Returns whether this appears to be a valid type. Rust analyzer, when asked to emit code for some
/// types, produces invalid code. In particular, fixed sized arrays come out without a size. e.g.
/// instead of `[i32, 5]`, we get `[i32, _]`.
pub(crate) fn is_type_valid(type_name: &str) -> bool {
    use ra_ap_syntax::SyntaxKind;
    let wrapped_source = format!("const _: {type_name} = foo();");
    let parsed = ast::SourceFile::parse(&wrapped_source, EDITION);
    if !parsed.errors().is_empty() {
        return false;
    }
    for node in parsed.syntax_node().descendants() {
        if node.kind() == SyntaxKind::ERROR || node.kind() == SyntaxKind::INFER_TYPE {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod test {
    use super::RustAnalyzer;
    use super::TypeName;
    use super::is_type_valid;
    use anyhow::Result;

    impl TypeName {
        fn named(name: &str) -> TypeName {
            TypeName::Named(name.to_owned())
        }
    }

    #[test]
    fn get_variable_types() -> Result<()> {
        let tmpdir = tempfile::tempdir()?;
        let mut ra = RustAnalyzer::new(tmpdir.path())?;
        ra.with_sysroot = false;
        std::fs::write(
            ra.cargo_toml_filename().to_path_buf(),
            r#"
            [package]
            name = "foo"
            version = "0.1.0"
            edition = "2024"

            [lib]
            "#,
        )?;

        ra.set_source(
            r#"
            struct Foo<const I: usize> {}
            struct Point {x: u8, y: u8}
            fn foo() {
                let v1 = true;
                let mut v1 = 42i32;
                let v2 = &[false];
                let v3: Foo<10> = Foo::<10> {};
                {
                    let v2 = false;
                    let v100 = true;
                }
                let (v4, ..) = (42u64, 43, 44);
                let p1 = Point {x: 1, y: 2};
                let Point {x, y: y2} = p1;
            }
            fn foo2() {
                let v9 = true;
            }"#
            .to_owned(),
        )?;
        let var_types = ra.top_level_variables("foo").unwrap();
        assert_eq!(var_types["v1"].type_name, TypeName::named("i32"));
        assert!(var_types["v1"].is_mutable);
        assert_eq!(var_types["v2"].type_name, TypeName::named("&[bool; 1]"));
        assert!(!var_types["v2"].is_mutable);
        assert_eq!(var_types["v3"].type_name, TypeName::named("Foo<10>"));
        assert!(!var_types.contains_key("v100"));
        assert_eq!(var_types["v4"].type_name, TypeName::named("u64"));
        assert_eq!(var_types["x"].type_name, TypeName::named("u8"));
        assert_eq!(var_types["y2"].type_name, TypeName::named("u8"));

        ra.set_source(
            r#"
            fn foo() {
                let v1 = 1u16;
            }"#
            .to_owned(),
        )?;
        let var_types = ra.top_level_variables("foo").unwrap();
        assert_eq!(var_types["v1"].type_name, TypeName::named("u16"));
        assert!(!var_types.contains_key("v2"));

        Ok(())
    }

    #[test]
    fn test_is_type_valid() {
        assert!(is_type_valid("Vec<String>"));
        assert!(is_type_valid("&[i32]"));
        assert!(!is_type_valid("[i32, _]"));
        assert!(!is_type_valid("Vec<_>"));
        assert!(is_type_valid("Foo<42>"));
    }
}
