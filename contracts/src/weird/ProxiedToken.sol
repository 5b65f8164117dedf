// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title ProxiedToken
/// @notice Implementation of an ERC-20 that lives behind an OpenZeppelin ERC1967Proxy:
///         the proxy's storage holds name, symbol, decimals and the owner, written by
///         initialize() through the proxy's constructor. The implementation itself is
///         locked at deployment.
contract ProxiedToken is ERC20 {
    error AlreadyInitialized();
    error NotOwner();

    string private _tokenName;
    string private _tokenSymbol;
    uint8 private _tokenDecimals;
    address public owner;
    bool private _initialized;

    constructor() ERC20("", "") {
        _initialized = true;
    }

    function initialize(string calldata name_, string calldata symbol_, uint8 decimals_) external {
        if (_initialized) revert AlreadyInitialized();
        _initialized = true;
        _tokenName = name_;
        _tokenSymbol = symbol_;
        _tokenDecimals = decimals_;
        owner = msg.sender;
    }

    function name() public view override returns (string memory) {
        return _tokenName;
    }

    function symbol() public view override returns (string memory) {
        return _tokenSymbol;
    }

    function decimals() public view override returns (uint8) {
        return _tokenDecimals;
    }

    function mint(address to, uint256 amount) external {
        if (msg.sender != owner) revert NotOwner();
        _mint(to, amount);
    }
}
