"""The config validator: good files load, bad files fail with the path of the problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from crossmargin.core.config import checksummed, parse_config
from crossmargin.core.errors import ConfigError
from oracle.estimation import config_estimates

WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
FEED = "0x5f4eC3Df9cbd43714FE2740f5E3616155c5b8419"

GOOD = f"""
settlement_chain = "ethereum"

[[chains]]
name = "ethereum"
chain_id = 1
rpc_urls = ["${{TEST_ETH_RPC:-http://127.0.0.1:8545}}"]

[[assets]]
symbol = "ETH"
liquidation_horizon_days = 1
sigma_default = 0.035
liquidity_depth_usd = 1e9

[[assets.feeds]]
chain = "ethereum"
address = "{FEED}"
heartbeat_s = 3600

[[representations]]
chain = "ethereum"
asset = "ETH"
symbol = "WETH"
address = "{WETH}"
decimals = 18

[risk]
default_correlation = 0.5

[bridges]
hub = "ethereum"
"""


def test_good_config_loads_with_env_default_and_override() -> None:
    cfg = parse_config(GOOD, env={})
    assert cfg.chains[0].rpc_urls == ["http://127.0.0.1:8545"]
    cfg = parse_config(GOOD, env={"TEST_ETH_RPC": "http://node:1"})
    assert cfg.chains[0].rpc_urls == ["http://node:1"]
    assert cfg.representations[0].address == WETH
    assert cfg.risk.alpha == 0.99  # METHOD.md default


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("chain_id = 1", "chain_id = -1", "chains.0.chain_id: Input should be greater than 0"),
        ('asset = "ETH"', 'asset = "DOGE"', "representations.0.asset: unknown asset 'DOGE'"),
        ('hub = "ethereum"', 'hub = "moon"', "bridges.hub: unknown chain 'moon'"),
        ("decimals = 18", "decimals = 78", "representations.0.decimals"),
        (WETH, WETH.replace("C02aaA", "C02AAA"), "bad EIP-55 checksum"),
        (WETH, "0x1234", "not a 20-byte hex address"),
        ("sigma_default = 0.035", "sigma_default = -1.0", "assets.0.sigma_default"),
        ("heartbeat_s = 3600", "heartbeat_s = 3600\nbogus = 1", "assets.0.feeds.0.bogus: Extra"),
        ("[risk]\n", "[risk]\nkappa = 2.0\n", "risk.kappa"),
        (
            'rpc_urls = ["${TEST_ETH_RPC:-http://127.0.0.1:8545}"]',
            'rpc_urls = ["${TEST_ETH_RPC}"]',
            "chains.0.rpc_urls.0: environment variable TEST_ETH_RPC is not set",
        ),
        ('settlement_chain = "ethereum"', 'settlement_chain = "ethereum', "not valid TOML"),
        (
            "liquidity_depth_usd = 1e9\n",
            "",
            "assets.0.liquidity_depth_usd: required, ETH can be collateral (representations.0",
        ),
        ("liquidity_depth_usd = 1e9", "liquidity_depth_usd = 0", "assets.0.liquidity_depth_usd"),
    ],
)
def test_bad_config_names_the_path(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        parse_config(GOOD.replace(old, new), env={}, source="bad.toml")
    assert expected in str(info.value)
    assert str(info.value).startswith("bad.toml")


def test_duplicate_representation_is_rejected() -> None:
    text = (
        GOOD
        + f"""
[[representations]]
chain = "ethereum"
asset = "ETH"
symbol = "WETH2"
address = "{WETH.lower()}"
decimals = 18
"""
    )
    with pytest.raises(ConfigError, match=r"representations\.1: .* already representations\.0"):
        parse_config(text, env={})


def test_depth_may_be_left_out_only_for_an_asset_that_is_never_collateral() -> None:
    # §7: config must give D_a for every asset that can be collateral
    debt_only = GOOD.replace("liquidity_depth_usd = 1e9\n", "").replace(
        "decimals = 18\n", 'decimals = 18\nkind = "debt"\n'
    )
    cfg = parse_config(debt_only, env={})
    assert cfg.assets[0].liquidity_depth_usd is None


def test_env_vars_fill_only_rpc_urls() -> None:
    text = GOOD.replace("sigma_default = 0.035", 'sigma_default = "${SIGMA}"')
    with pytest.raises(ConfigError, match=r"assets\.0\.sigma_default"):
        parse_config(text, env={"SIGMA": "0.1"})


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossmargin.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_cli_config_check(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    ok = _cli("config", "check", str(good))
    assert ok.returncode == 0, ok.stderr
    assert "ok (1 chains, 1 assets, 1 representations)" in ok.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text(
        GOOD.replace('asset = "ETH"', 'asset = "DOGE"').replace("chain_id = 1", "chain_id = 0")
    )
    res = _cli("config", "check", str(bad))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 or all(line.startswith(str(bad)) for line in lines)
    assert "chains.0.chain_id" in res.stderr
    assert "Traceback" not in res.stderr

    no_depth = tmp_path / "no-depth.toml"
    no_depth.write_text(GOOD.replace("liquidity_depth_usd = 1e9\n", ""))
    res = _cli("config", "check", str(no_depth))
    assert res.returncode == 1
    assert res.stderr.startswith(str(no_depth))
    assert "assets.0.liquidity_depth_usd: required, ETH can be collateral" in res.stderr
    assert "Traceback" not in res.stderr

    missing = _cli("config", "check", str(tmp_path / "nope.toml"))
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr


# ------------------------------------------------------------ correlations (METHOD.md §6)

SYMBOLS = ("ETH", "BTC", "USDC", "SOL")


def with_assets(symbols: tuple[str, ...], pairs: list[tuple[str, str, float, bool]]) -> str:
    """GOOD plus more assets (ETH is GOOD's) and `[[risk.correlations]]` entries."""
    text = GOOD
    for s in symbols:
        if s != "ETH":
            text += (
                f'\n[[assets]]\nsymbol = "{s}"\nliquidation_horizon_days = 1\n'
                f'sigma_default = 0.03\n[[assets.feeds]]\nchain = "ethereum"\n'
                f'address = "{FEED}"\nheartbeat_s = 3600\n'
            )
    for a, b, rho, override in pairs:
        flag = "true" if override else "false"
        text += f'\n[[risk.correlations]]\na = "{a}"\nb = "{b}"\nrho = {rho}\noverride = {flag}\n'
    return text


def smallest_eigenvalue(symbols: tuple[str, ...], pairs: list[tuple[str, str, float]]) -> float:
    m = np.eye(len(symbols))
    for a, b, rho in pairs:
        i, j = symbols.index(a), symbols.index(b)
        m[i, j] = m[j, i] = rho
    return float(np.linalg.eigvalsh(m)[0])


TRIANGLE = [("ETH", "BTC", 0.9), ("BTC", "USDC", 0.9), ("ETH", "USDC", -0.9)]


def test_overrides_that_are_not_psd_are_refused_with_the_eigenvalue() -> None:
    symbols = SYMBOLS[:3]
    text = with_assets(symbols, [(a, b, r, True) for a, b, r in TRIANGLE])
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={}, source="bad.toml")
    low = smallest_eigenvalue(symbols, TRIANGLE)
    assert low < -0.5
    assert str(info.value) == (
        "bad.toml: risk.correlations: overrides are not positive semidefinite "
        f"(smallest eigenvalue {low:.3g}, among BTC, ETH, USDC)"
    )


def test_fallback_pairs_are_not_checked_but_config_check_notes_them(tmp_path: Path) -> None:
    """The same impossible triangle as fallbacks (override = false) loads: at run time they
    mix with estimates and are repaired with a warning; `config check` says so."""
    symbols = SYMBOLS[:3]
    cfg = parse_config(with_assets(symbols, [(a, b, r, False) for a, b, r in TRIANGLE]), env={})
    assert len(cfg.risk.correlations) == 3
    # two overrides whose third pair is a fallback: some correlation matrix holds them
    mixed = [(a, b, r, a != "ETH" or b != "USDC") for a, b, r in TRIANGLE]
    path = tmp_path / "mixed.toml"
    path.write_text(with_assets(symbols, mixed), encoding="utf-8")
    res = _cli("config", "check", str(path))
    assert res.returncode == 0, res.stderr
    assert "not positive semidefinite; without price history they are repaired" in res.stdout

    good = tmp_path / "good.toml"
    good.write_text(GOOD, encoding="utf-8")
    assert "note:" not in _cli("config", "check", str(good)).stdout


def test_a_chordless_cycle_of_overrides_is_refused_and_a_chord_fixes_it() -> None:
    cycle = [("ETH", "BTC"), ("BTC", "USDC"), ("USDC", "SOL"), ("SOL", "ETH")]
    text = with_assets(SYMBOLS, [(a, b, 0.3, True) for a, b in cycle])
    with pytest.raises(ConfigError, match=r"risk\.correlations: .*cycle of four or more"):
        parse_config(text, env={})
    chord = [*cycle, ("ETH", "USDC")]
    cfg = parse_config(with_assets(SYMBOLS, [(a, b, 0.3, True) for a, b in chord]), env={})
    assert sum(p.override for p in cfg.risk.correlations) == 5


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("ETH", "ETH", 0.5)], "item 0 pairs ETH with itself"),
        ([("ETH", "BTC", 0.5), ("BTC", "ETH", 0.6)], "item 1: the pair BTC, ETH is given twice"),
    ],
)
def test_self_and_repeated_pairs_are_refused(
    pairs: list[tuple[str, str, float]], expected: str
) -> None:
    text = with_assets(SYMBOLS[:2], [(a, b, r, False) for a, b, r in pairs])
    with pytest.raises(ConfigError, match=f"risk.correlations: {expected}"):
        parse_config(text, env={})


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(min_value=2, max_value=4),
    values=st.lists(st.floats(min_value=-1.0, max_value=1.0), min_size=6, max_size=6),
)
def test_complete_overrides_load_iff_psd_and_are_then_used_unrepaired(
    k: int, values: list[float]
) -> None:
    """Every pair overridden: the config loads exactly when the matrix is PSD, and then
    the run-time estimate uses it as given (no repair moves an override)."""
    symbols = SYMBOLS[:k]
    pairs = [
        (symbols[i], symbols[j], round(values[n], 6))
        for n, (i, j) in enumerate((i, j) for i in range(k) for j in range(i + 1, k))
    ]
    low = smallest_eigenvalue(symbols, pairs)
    assume(abs(low) > 1e-8)  # away from the tolerance
    text = with_assets(symbols, [(a, b, r, True) for a, b, r in pairs])
    if low < 0:
        with pytest.raises(ConfigError, match="not positive semidefinite"):
            parse_config(text, env={})
        return
    cfg = parse_config(text, env={})
    est = config_estimates(cfg)
    assert not est.repaired
    for a, b, rho in pairs:
        i, j = est.symbols.index(a), est.symbols.index(b)
        assert est.correlation[i][j] == rho


# ------------------------------------------------------------ NaN, infinity, encoding


HUB = 'hub = "ethereum"'


@pytest.mark.parametrize(
    ("old", "new", "path", "shown"),
    [
        ("sigma_default = 0.035", "sigma_default = nan", "assets.0.sigma_default", "nan"),
        ("[risk]\n", "[risk]\nmax_deviation = inf\n", "risk.max_deviation", "inf"),
        ("[risk]\n", "[risk]\nalpha = -inf\n", "risk.alpha", "-inf"),
        ("heartbeat_s = 3600", "heartbeat_s = 3600\nmin_answer = nan",
         "assets.0.feeds.0.min_answer", "nan"),
        (HUB, f"{HUB}\n\n[api]\nrequest_timeout_s = +inf", "api.request_timeout_s", "inf"),
        (HUB, f'{HUB}\n\n[[scenarios]]\nname = "x"\nshocks = {{ ETH = -nan }}',
         "scenarios.0.shocks.ETH", "nan"),
    ],
)  # fmt: skip
def test_nan_and_infinity_are_refused_anywhere(old: str, new: str, path: str, shown: str) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        parse_config(GOOD.replace(old, new, 1), env={}, source="bad.toml")
    assert str(info.value) == f"bad.toml: {path}: {shown} is not a finite number"


def test_nan_in_a_correlation_is_refused() -> None:
    text = with_assets(SYMBOLS[:2], [("ETH", "BTC", 0.5, True)]).replace("rho = 0.5", "rho = nan")
    with pytest.raises(ConfigError, match=r"risk\.correlations\.0\.rho: nan is not a finite"):
        parse_config(text, env={})


@pytest.mark.parametrize(
    "data",
    [b"\xff\xfe" + GOOD.encode("utf-16-le"), ("# caf\u00e9\n" + GOOD).encode("latin-1")],
    ids=["utf-16", "latin-1"],
)
def test_a_non_utf8_config_is_one_line(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(data)
    res = _cli("config", "check", str(path))
    assert res.returncode == 1
    assert res.stderr.startswith(f"{path}: not UTF-8 text (byte ")
    assert len(res.stderr.strip().splitlines()) == 1
    margin = _cli("margin", "0x" + "11" * 20, "--config", str(path))
    assert margin.returncode == 1
    assert margin.stderr.strip().splitlines() == [f"crossmargin: error: {res.stderr.strip()}"]


def test_config_check_prints_hosts_only(tmp_path: Path) -> None:
    text = GOOD.replace(
        'rpc_urls = ["${TEST_ETH_RPC:-http://127.0.0.1:8545}"]',
        'rpc_urls = ["${TEST_ETH_RPC}", "http://[::1]:8545/", "wss://ws.example.org/key/K3Y",'
        ' "not a url", "http://host:99999/"]',
    )
    path = tmp_path / "hosts.toml"
    path.write_text(text, encoding="utf-8")
    secret = "https://alice:s3cret@rpc.example.com:8443/v3/APIKEY123?token=T0K"
    res = subprocess.run(
        [sys.executable, "-m", "crossmargin.cli", "config", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "TEST_ETH_RPC": secret},
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1] == (
        "  ethereum (1): https://rpc.example.com:8443, http://[::1]:8545, wss://ws.example.org, "
        "(not an http(s) or ws(s) URL), (not an http(s) or ws(s) URL)"
    )
    for leak in ("alice", "s3cret", "APIKEY123", "T0K", "K3Y", "99999"):
        assert leak not in res.stdout + res.stderr


@pytest.mark.parametrize(
    "text",
    [
        "F78aE5d9f0cceCE860C7f05e1C7927204266F817",  # 40 hex digits, no prefix
        "0XF78aE5d9f0cceCE860C7f05e1C7927204266F817",  # upper-case X
        "0xF78aE5d9f0cceCE860C7f05e1C7927204266F81",  # 39 digits
        "0xF78aE5d9f0cceCE860C7f05e1C7927204266f817",  # last letter's case flipped: bad checksum
    ],
)
def test_an_address_needs_0x_forty_digits_and_a_good_checksum(text: str) -> None:
    with pytest.raises(ValueError, match=r"address|checksum"):
        checksummed(text)


def test_an_address_in_lower_case_is_emitted_checksummed() -> None:
    lower = "0xf78ae5d9f0ccece860c7f05e1c7927204266f817"
    assert checksummed(lower) == "0xF78aE5d9f0cceCE860C7f05e1C7927204266F817"


POOL = "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2"  # Aave v3 Pool, Ethereum
A_WETH = "0x4d5F47FA6A74757f35C14fD3a6Ef8E3C9BC514E8"  # aEthWETH


def _with_aave(protocols: str, rep_extra: str = 'protocol = "aave_v3"') -> str:
    return (
        GOOD
        + protocols
        + f"""
[[representations]]
chain = "ethereum"
asset = "ETH"
symbol = "aEthWETH"
address = "{A_WETH}"
decimals = 18
{rep_extra}
"""
    )


AAVE = f'\n[[protocols]]\nkind = "aave_v3"\nchain = "ethereum"\npool = "{POOL}"\n'


def test_an_aave_market_and_its_representations_load() -> None:
    config = parse_config(_with_aave(AAVE), env={})
    market = config.protocol("aave_v3", "ethereum")
    assert market is not None
    assert market.pool == POOL
    assert config.protocol("aave_v3", "arbitrum") is None
    assert [r.symbol for r in config.representations if r.protocol] == ["aEthWETH"]
    assert config.risk.local_health_warn == 1.05  # §12 default


def test_several_aave_pools_on_a_chain_by_name() -> None:
    """Core and Prime on one chain: each representation names its pool's entry."""
    prime = "0x4e033931ad43597d96D6bcc25c280717730B58B1"
    two = AAVE.replace("pool =", 'name = "Core"\npool =') + AAVE.replace(
        "pool =", 'name = "Prime"\npool ='
    ).replace(POOL, prime)
    config = parse_config(_with_aave(two, 'protocol = "aave_v3"\nmarket = "Prime"'), env={})
    (rep,) = [r for r in config.representations if r.protocol]
    entry = config.protocol_of(rep)
    assert entry is not None
    assert (entry.name, entry.pool) == ("Prime", prime)
    assert config.protocol("aave_v3", "ethereum") is None  # ambiguous without a name
    core = config.protocol("aave_v3", "ethereum", "Core")
    assert core is not None
    assert core.pool == POOL


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_with_aave(""), "representations.1.protocol: no [[protocols]] entry of kind aave_v3"),
        (_with_aave(AAVE + AAVE), "protocols.0.name: required, ethereum has several aave_v3"),
        (
            _with_aave(AAVE + AAVE.replace("pool =", 'name = "Core"\npool =')),
            "protocols.0.name: required",
        ),
        (
            _with_aave(AAVE.replace("pool =", 'name = "Core"\npool =') * 2),
            "protocols.1: a second aave_v3 Core on ethereum",
        ),
        (
            _with_aave(AAVE, 'protocol = "aave_v3"\nmarket = "Prime"'),
            "no [[protocols]] entry of kind aave_v3 on ethereum named 'Prime'",
        ),
        (_with_aave(AAVE.replace("pool =", "morpho =")), "an aave_v3 entry takes `pool`"),
        (_with_aave(AAVE.replace('"ethereum"', '"mars"')), "protocols.0.chain: unknown chain"),
        (_with_aave(AAVE.replace("aave_v3", "compound_v3")), "protocols.0.kind"),
        (_with_aave(AAVE, 'protocol = "morpho"'), "representations.1.protocol"),
        (
            _with_aave(AAVE).replace("[risk]\n", "[risk]\nlocal_health_warn = 0.9\n"),
            "risk.local_health_warn",
        ),
    ],
)
def test_bad_protocol_config_names_the_path(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={}, source="bad.toml")
    assert expected in str(info.value)


def test_verified_mode_fields_are_hashed_only_when_used() -> None:
    """§13's `verification` and `balance_slot` leave a plain config's hash (and so every
    plain snapshot id) as it was; using them changes it (they shape the figures)."""
    from crossmargin.core.config import config_hash, load_config, risk_document

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "mainnet.toml", env={})
    assert "verification" not in risk_document(config)
    assert "balance_slot" not in risk_document(config)
    chain = config.chains[0].model_copy(update={"verification": "proof"})
    proof = config.model_copy(update={"chains": [chain, *config.chains[1:]]})
    assert '"verification":"proof"' in risk_document(proof)
    assert config_hash(proof) != config_hash(config)
    rep = config.representations[1].model_copy(update={"balance_slot": "vyper:3"})
    slot = config.model_copy(update={"representations": [config.representations[0], rep,
                                                         *config.representations[2:]]})  # fmt: skip
    assert '"balance_slot":"vyper:3"' in risk_document(slot)
