# frozen_string_literal: true

# Runs the Homebrew formula packaging/homebrew/chat.rb without Homebrew, against a chat binary
# that is already built (CI builds it; cargo is not run here):
#
#   ruby packaging/homebrew/harness.rb FORMULA BINARY
#
# A minimal stand-in for the parts of Homebrew's formula DSL the formula uses, with Homebrew's
# semantics where they matter (shell_output asserts the exit status, inreplace fails when nothing
# is replaced, Minitest assertions, a service block sees only what Homebrew's Service delegates).
# A fake HOMEBREW_PREFIX in a temporary directory holds Cellar/chat/VERSION, opt/chat, bin, etc
# and var. Stages:
#   1. spec:    desc, homepage, url (chat-VERSION.tar.gz), sha256, license, rust as a build dependency.
#   2. install: `def install` runs with `system` recorded instead of run; the cargo install call
#               must carry std_cargo_args (its --root is the keg) and is "performed" by linking
#               BINARY into the keg's bin. Then the config it writes is checked with the binary,
#               post_install runs, and a second install must keep an edited config.
#   3. service: the run command's flags are accepted by the binary, its config passes
#               `chat config check` with the data in var/chat, and the command really serves
#               (ports moved to free ones with CHAT_* variables, which override the file).
#   4. test:    the formula's `test do` block, in a fresh testpath that is also HOME and the cwd.
# Exits 1 at the first failure. KEEP_TMP=1 keeps the fake prefix.

require "English"
require "fileutils"
require "open3"
require "pathname"
require "rbconfig"
require "socket"
require "tmpdir"
require "minitest"
require "minitest/assertions"

# Homebrew's extend/pathname.rb: Pathnames pass where Strings are expected (spawn, system) ...
class Pathname
  alias to_str to_s

  # ... and Pathname#install moves files into the directory.
  def install(*sources)
    mkpath
    sources.flatten.each do |src|
      src = Pathname(src)
      raise Errno::ENOENT, src.to_s unless src.exist?

      install_file(src, self/src.basename)
    end
  end

  private

  def install_file(src, dst)
    FileUtils.mv(src, dst)
  end
end

# Homebrew's InstallRenamed (etc, pkgetc): an existing different file is kept and the new one is
# written next to it as NAME.default.
module InstallRenamed
  def /(other)
    super.extend(InstallRenamed)
  end

  private

  def install_file(src, dst)
    dst = Pathname("#{dst}.default") if dst.file? && !FileUtils.identical?(src, dst)
    FileUtils.mv(src, dst)
  end
end

# Homebrew's Utils.safe_popen_read: the output of a command that must succeed.
module Utils
  def self.safe_popen_read(*args)
    out = IO.popen(args.map(&:to_s), &:read)
    raise "Failure while executing; `#{args.join(" ")}` exited with #{$CHILD_STATUS.exitstatus}." unless $CHILD_STATUS.success?

    out
  end
end

def ohai(msg)
  puts "==> #{msg}"
end

# Homebrew's global quiet_system: Kernel.system with the output discarded.
def quiet_system(cmd, *args)
  Kernel.system(cmd.to_s, *args.map(&:to_s), out: File::NULL, err: File::NULL)
end

# The class-level DSL records what the formula declares; the instance side gives the paths and
# helpers of install, post_install, caveats and test.
class Formula
  include Minitest::Assertions

  attr_writer :assertions

  class << self
    attr_reader :spec, :deps, :service_block, :test_block

    def inherited(sub)
      super
      Formula.loaded << sub
    end

    def loaded = (@loaded ||= [])

    %i[desc homepage url sha256 version].each do |key|
      define_method(key) { |value| (@spec ||= {})[key] = value }
    end

    def license(value) = ((@spec ||= {})[:license] = value)
    def depends_on(dep) = ((@deps ||= []) << dep)
    def service(&block) = (@service_block = block)
    def test(&block) = (@test_block = block)
  end

  attr_reader :calls, :root

  def initialize(root, binary)
    @root = root
    @binary = binary
    @calls = []
    @mode = :install
  end

  attr_accessor :mode

  def assertions = (@assertions ||= 0)
  def inspect = "#<Formula #{name}>"
  def name = self.class.name.downcase
  def version = self.class.spec[:version] || self.class.spec[:url][/-v?(\d+(?:\.\d+)+)\.tar\.gz\z/, 1]
  def prefix = root/"Cellar"/name/version
  def bin = prefix/"bin"
  def opt_prefix = root/"opt"/name
  def opt_bin = opt_prefix/"bin"
  def etc = (root/"etc").extend(InstallRenamed)
  def pkgetc = (root/"etc"/name).extend(InstallRenamed)
  def var = root/"var"
  def buildpath = @buildpath ||= root/"build"
  def testpath = @testpath ||= Pathname(Dir.mktmpdir("#{name}-test", root.to_s)).realpath

  def std_cargo_args(root: prefix, path: ".")
    ["--jobs", "2", "--locked", "--root=#{root}", "--path=#{path}"]
  end

  # Install: record; the one expected build command, cargo install, is performed by linking the
  # built binary where it would have installed it. Test: run it, failing like Homebrew does.
  def system(cmd, *args)
    ohai "#{cmd} #{args.join(" ")}"
    if mode == :install
      @calls << [cmd.to_s, *args.map(&:to_s)]
      fake_cargo_install(args.map(&:to_s)) if cmd.to_s == "cargo" && args.first.to_s == "install"
      return true
    end
    raise "Failed executing: #{cmd} #{args.join(" ")}" unless Kernel.system(cmd.to_s, *args.map(&:to_s))

    true
  end

  def inreplace(paths, before, after)
    Array(paths).each do |path|
      text = File.read(path)
      changed = text.gsub(before, after.to_s)
      raise "inreplace failed: #{path}: #{before.inspect} was not found" if changed == text

      File.write(path, changed)
    end
  end

  def free_port
    server = TCPServer.new(0)
    _, port, = server.addr
    server.close
    port
  end

  # Homebrew's formula_assertions.rb.
  def shell_output(cmd, result = 0)
    ohai cmd.to_s
    assert_path_exists cmd, "Pathname '#{cmd}' does not exist!" if cmd.is_a?(Pathname)
    output = `#{cmd}`
    assert_equal result, $CHILD_STATUS.exitstatus, "exit status of: #{cmd}\n#{output}"
    output
  end

  def pipe_output(cmd, input = nil, result = nil)
    ohai cmd.to_s
    output = IO.popen(cmd, "w+") do |pipe|
      pipe.write(input) unless input.nil?
      pipe.close_write
      pipe.read
    end
    assert_equal result, $CHILD_STATUS.exitstatus unless result.nil?
    output
  end

  private

  def fake_cargo_install(args)
    root_arg = args.find { |a| a.start_with?("--root=") }
    raise "cargo install without --root" unless root_arg

    names = args.each_cons(2).select { |flag, _| flag == "--bin" }.map(&:last)
    names = [name] if names.empty?
    raise "cargo install does not install #{name} (--bin #{names.join(", ")})" unless names.include?(name)

    dir = Pathname(root_arg.delete_prefix("--root="))/"bin"
    dir.mkpath
    FileUtils.ln_sf(@binary, dir/name)
  end
end

# Homebrew's Service DSL (service.rb), the settings the formula may use. Like Homebrew's, it
# delegates only these path helpers to the formula.
class Service
  attr_reader :settings

  DELEGATED = %i[bin etc libexec opt_bin opt_libexec opt_pkgshare opt_prefix opt_sbin var].freeze

  def initialize(formula, &block)
    @formula = formula
    @settings = { run: [], environment_variables: {} }
    instance_eval(&block)
  end

  DELEGATED.each { |m| define_method(m) { @formula.public_send(m) } }

  def inspect = "#<Service of #{@formula.inspect}>"

  def run(command = nil) = (@settings[:run] = Array(command).map(&:to_s))
  def environment_variables(vars = {}) = (@settings[:environment_variables] = vars.transform_keys(&:to_s))

  %i[keep_alive working_dir log_path error_log_path run_type].each do |key|
    define_method(key) { |value| @settings[key] = value.is_a?(Pathname) ? value.to_s : value }
  end
end

# --- the checks -----------------------------------------------------------------------------------

class Check
  include Minitest::Assertions

  attr_writer :assertions

  def assertions = (@assertions ||= 0)

  def initialize(formula_file, binary)
    @formula_file = formula_file
    @binary = binary
    @root = Pathname(Dir.mktmpdir("chat-brew-")).realpath
  end

  def run
    load @formula_file
    klass = Formula.loaded.last or raise "#{@formula_file} defines no Formula"
    @f = klass.new(@root, @binary)
    ENV.keys.grep(/\ACHAT_/).each { |k| ENV.delete(k) }
    stage("spec") { spec }
    stage("install") { install }
    stage("service") { service }
    stage("test") { test }
    puts "harness: #{File.basename(@formula_file)}: all stages passed " \
         "(#{assertions} harness assertions, #{@f.assertions} in the test block)"
  ensure
    FileUtils.rm_rf(@root) unless ENV["KEEP_TMP"]
  end

  private

  def stage(name)
    puts "== #{name}"
    Dir.chdir(@root) { yield }
  rescue Minitest::Assertion, StandardError => e
    warn "harness: FAILED in #{name}: #{e.class}: #{e.message}"
    warn e.backtrace.grep(/#{Regexp.escape(File.basename(@formula_file))}/).first(3).map { |l| "  at #{l}" }.join("\n")
    exit 1
  end

  def spec
    s = @f.class.spec
    %i[desc homepage url sha256 license].each { |k| assert s[k], "the formula has no #{k}" }
    assert_match %r{\Ahttps?://}, s[:homepage]
    assert_match %r{\A(https|file)://.+/#{@f.name}-#{Regexp.escape(@f.version.to_s)}\.tar\.gz\z}, s[:url]
    assert_match(/\A\h{64}\z/, s[:sha256], "sha256 is not 64 hex digits")
    assert_includes @f.class.deps, { "rust" => :build }
    refute_nil @f.class.service_block, "no service block"
    refute_nil @f.class.test_block, "no test block"
    puts "version #{@f.version} from #{s[:url]}"
  end

  def cargo_calls = @f.calls.select { |c| c[0, 2] == %w[cargo install] }

  def install
    @f.buildpath.mkpath
    Dir.chdir(@f.buildpath) { @f.install }
    assert_equal 1, cargo_calls.size, "install runs `cargo install` once: #{@f.calls.inspect}"
    assert_empty @f.calls - cargo_calls, "install runs only cargo install"
    std = @f.std_cargo_args
    assert_empty std - cargo_calls.first, "cargo install lacks std_cargo_args #{std - cargo_calls.first}"
    assert_path_exists @f.bin/"chat"

    # `brew link` and the opt symlink, then post_install (outside the keg, like Homebrew).
    (@root/"opt").mkpath
    FileUtils.ln_s(@f.prefix, @f.opt_prefix)
    (@root/"bin").mkpath
    FileUtils.ln_sf(@f.bin/"chat", @root/"bin/chat")
    @f.post_install if @f.respond_to?(:post_install)
    assert_predicate @f.var/"chat", :directory?

    config = @f.pkgetc/"chat.toml"
    assert_path_exists config
    settings = run_ok(@binary, "config", "check", config)
    assert_includes settings.lines.map(&:strip), %(data_dir = "#{@f.var}/chat"), "data_dir of #{config}"
    puts "#{config}: valid, data_dir = #{@f.var}/chat"
    if @f.respond_to?(:caveats)
      assert_includes @f.caveats, config.to_s
      puts "caveats name #{config}"
    end

    # Reinstall (upgrade) after an edit: the edited file stays, the new default lands beside it.
    File.write(config, "#{File.read(config)}\n# edited by the admin\n")
    FileUtils.rm_rf(@f.buildpath)
    @f.buildpath.mkpath
    Dir.chdir(@f.buildpath) { @f.install }
    assert_match "# edited by the admin", File.read(config)
    assert_path_exists Pathname("#{config}.default")
    puts "reinstall kept the edited #{config}, wrote chat.toml.default"
  end

  def service
    svc = Service.new(@f, &@f.class.service_block).settings
    cmd = svc[:run]
    env = svc[:environment_variables]
    assert_equal((@f.opt_bin/"chat").to_s, cmd.first, "the service runs opt_bin/chat")
    assert File.executable?(cmd.first), "#{cmd.first} is not executable"
    assert_equal "serve", cmd[1]
    assert_equal true, svc[:keep_alive]
    %i[log_path error_log_path].each { |k| assert svc[k]&.start_with?("#{@f.var}/log/"), "#{k} under var/log" }
    assert_predicate Pathname(svc[:working_dir]), :directory?, "working_dir exists after post_install"

    run_ok(*cmd, "--help", env:) # every flag of the command line exists
    settings = run_ok(cmd.first, "config", "check", *cmd[2..], env:)
    assert_includes settings.lines.map(&:strip), %(data_dir = "#{@f.var}/chat")
    puts "service: #{cmd.join(" ")} (flags accepted, config valid)"

    # Run the service's command as brew services would (cwd, env, log file), with the ports moved
    # to free ones: CHAT_* variables win over the config file. The data must land in var/chat.
    port = @f.free_port
    log = Pathname(svc[:log_path])
    log.dirname.mkpath
    overrides = { "CHAT_LISTEN" => "127.0.0.1:#{port}", "CHAT_TURN_LISTEN" => "127.0.0.1:0",
                  "CHAT_METRICS_LISTEN" => "off" }
    pid = spawn(env.merge(overrides), *cmd, chdir: svc[:working_dir], %i[out err] => [log.to_s, "a"])
    up = exited = false
    begin
      100.times do
        break if (up = quiet_system("curl", "-fs", "-o", File::NULL, "http://127.0.0.1:#{port}/healthz"))
        break if (exited = Process.wait(pid, Process::WNOHANG))

        sleep 0.2
      end
      assert up, "the service command did not serve /healthz:\n#{log.read}"
    ensure
      unless exited
        Process.kill("TERM", pid)
        Process.wait(pid)
      end
    end
    assert_path_exists @f.var/"chat/chat.redb"
    puts "service: served http://127.0.0.1:#{port}/healthz, data in #{@f.var}/chat, log #{log}"
  end

  def test
    @f.mode = :test
    testpath = @f.testpath
    env = { "HOME" => testpath.to_s, "PATH" => "#{@root}/bin:#{ENV.fetch("PATH")}" }
    saved = env.keys.to_h { |k| [k, ENV.fetch(k, nil)] }
    ENV.update(env)
    Dir.chdir(testpath) { @f.instance_exec(&@f.class.test_block) }
    assert_operator @f.assertions, :>, 0, "the test block asserts nothing"
  ensure
    saved&.each { |k, v| ENV[k] = v }
  end

  def run_ok(*cmd, env: {})
    out, err, status = Open3.capture3(env, *cmd.map(&:to_s))
    assert status.success?, "#{cmd.join(" ")} exited #{status.exitstatus}:\n#{out}#{err}"
    out
  end
end

abort "usage: ruby #{$PROGRAM_NAME} FORMULA BINARY" unless ARGV.size == 2
binary = File.expand_path(ARGV[1])
abort "harness: #{binary} is not an executable" unless File.executable?(binary)
Check.new(File.expand_path(ARGV[0]), binary).run
