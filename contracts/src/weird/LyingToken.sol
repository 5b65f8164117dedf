// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title LyingToken
/// @notice A token whose balances and totalSupply() are set independently, so a balance
///         can exceed the supply (a broken or malicious token: METHOD.md §4 plausibility),
///         and whose totalSupply() can be made to revert. It also answers the read side
///         of ERC-4626 one share to one unit of `asset` (asset(), convertToAssets), so
///         it can stand for a vault whose share balances exceed its share supply.
///         Devnet only: anyone may set anything.
contract LyingToken {
    error NoSupply();

    string public name;
    string public symbol;
    uint8 public immutable decimals;
    address public immutable asset;
    mapping(address => uint256) public balanceOf;
    uint256 private _supply;
    bool private _supplyReverts;

    constructor(string memory name_, string memory symbol_, uint8 decimals_, address asset_) {
        name = name_;
        symbol = symbol_;
        decimals = decimals_;
        asset = asset_;
    }

    /// @notice Set `owner`'s balance; the supply does not move.
    function setBalance(address owner, uint256 amount) external {
        balanceOf[owner] = amount;
    }

    /// @notice Set what totalSupply() returns, or make it revert.
    function setTotalSupply(uint256 supply, bool reverts) external {
        _supply = supply;
        _supplyReverts = reverts;
    }

    function totalSupply() external view returns (uint256) {
        if (_supplyReverts) revert NoSupply();
        return _supply;
    }

    function convertToAssets(uint256 shares) external pure returns (uint256) {
        return shares;
    }
}
